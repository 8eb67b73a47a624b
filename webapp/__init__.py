"""The Streamlit app's shared pieces, outside the library, which it uses only through its facade (`mvae.load()`
and the Pipeline). Each module imports only the ones before it, so that none needs another in a ring: `names`
(words and colours), `figures` (plotly figures, pictures and sounds made from arrays), `state` (the pooled
model, the error guard, the evaluator's files and the session's memory), `inputs` (the drawing pad and the
recorders) and `show` (what the pages display). `pool`, under them all, knows nothing of Streamlit."""
