"""Ctrl-C / SIGTERM during a run: the first signal only asks the loop to stop, the second stops at once."""

import os
import signal

import pytest

from tformer.cli import main, one_line
from tformer.interrupt import EXIT_CODE, Interrupted, stop_requests


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_first_signal_sets_the_flag_and_the_block_restores_the_handlers(sig):
    before = signal.getsignal(sig)
    with stop_requests() as flag:
        assert not flag.requested()
        os.kill(os.getpid(), sig)
        assert flag.requested() and flag.signal_name == sig.name
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), sig)
    assert signal.getsignal(sig) is before


def test_cli_prints_an_interrupt_as_one_line_with_exit_130(monkeypatch, capsys):
    import tformer.cli as cli

    def stopped(args):
        raise Interrupted("interrupted at step 7: checkpoint at R/checkpoints/step-00000007, continue with --resume")

    parser = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with_run(parser(), stopped))
    assert main(["models"]) == EXIT_CODE
    err = capsys.readouterr().err
    assert err == ("tformer models: interrupted at step 7: checkpoint at R/checkpoints/step-00000007, "
                   "continue with --resume\n")


@pytest.mark.parametrize("error, shown", [
    (PermissionError(13, "Permission denied", "/ro/run"), "[Errno 13] Permission denied: '/ro/run'"),
    (OSError(28, "No space left on device"), "[Errno 28] No space left on device"),
    (NotADirectoryError("out.dir=x.txt is a file;\n  pick a folder"), "out.dir=x.txt is a file; pick a folder"),
])
def test_cli_prints_os_errors_in_one_line(monkeypatch, capsys, error, shown):
    import tformer.cli as cli

    def fails(args):
        raise error

    parser = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with_run(parser(), fails))
    assert main(["models"]) == 2
    assert capsys.readouterr().err == f"tformer models: error: {shown}\n"
    assert one_line(error) == shown


def _with_run(parser, run):
    parser._subparsers._group_actions[0].choices["models"].set_defaults(run=run)
    return parser


def test_under_torchrun_only_rank_0_prints_the_interrupt(monkeypatch, capsys):
    import tformer.cli as cli

    def stopped(args):
        raise Interrupted("interrupted at step 3: checkpoint at R/checkpoints/step-00000003, continue with --resume")

    parser = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with_run(parser(), stopped))
    monkeypatch.setenv("RANK", "1")
    assert main(["models"]) == EXIT_CODE
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("RANK", "0")
    assert main(["models"]) == EXIT_CODE
    assert "interrupted at step 3" in capsys.readouterr().err
