"""Every command-line tool refuses bad data or checkpoints the same way: a message, no traceback, exit 2."""

import pytest

from mvae.errors import USER_ERROR_EXIT, DataError, run_cli


def refused_commands(tmp_path):
    import train
    from mvae import upgrade
    from mvae.evaluation import judges, report

    empty = tmp_path / "empty"
    empty.mkdir()
    return {
        "train.py": lambda: train.main(["--data-dir", str(empty), "--out", str(tmp_path / "run")]),
        "evaluation.report": lambda: report.main([str(tmp_path / "no-checkpoint"), "--data-dir", str(empty)]),
        "evaluation.report --compare": lambda: report.main(["--compare", str(tmp_path / "no-checkpoint")]),
        "evaluation.judges": lambda: judges.main(["--data-dir", str(empty), "--out", str(tmp_path / "judges")]),
        "upgrade": lambda: upgrade.main([str(tmp_path / "no-checkpoint")]),
    }


@pytest.mark.parametrize("name", ["train.py", "evaluation.report", "evaluation.report --compare",
                                  "evaluation.judges", "upgrade"])
def test_each_command_refuses_with_a_message_and_exit_2(tmp_path, capsys, name):
    assert refused_commands(tmp_path)[name]() == USER_ERROR_EXIT
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


def test_run_cli_passes_a_bug_through():
    """Only the refusals meant for a person become exit 2; a bug keeps its traceback."""
    def buggy():
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        run_cli(buggy)
    assert run_cli(lambda: (_ for _ in ()).throw(DataError("no data"))) == USER_ERROR_EXIT
    assert run_cli(lambda: 0) == 0
