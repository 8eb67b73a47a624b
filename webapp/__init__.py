"""The Streamlit app's widgets and figures, shared by app.py and pages/; outside the library, which it uses
only through its facade (`mvae.load()` and the Pipeline)."""
