import pytest

from arithinterp.cli import main


@pytest.fixture
def cli(capsys):
    """Call the command line: (exit code, stdout, stderr)."""

    def call(argv):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        captured = capsys.readouterr()
        return exc.value.code, captured.out, captured.err

    return call
