"""The demo's step runner (video_tag.demo.run): any exit code but 0 stops the demo, naming the step and
its code. The whole demo runs with ./run demo (minutes), not here."""
import pytest

from video_tag import demo


def test_a_step_that_exits_0_lets_the_demo_go_on(capfd):
    assert demo.run("1. fine step", "-c", "print('step ran')") is None
    assert "step ran" in capfd.readouterr().out


@pytest.mark.parametrize("code, demo_code, meaning", [(1, 3, "some inputs failed"), (2, 2, "refused"),
                                                       (4, 4, "internal error"), (-9, 3, "killed by signal 9")])
def test_any_other_code_stops_the_demo_naming_the_step(capfd, code, demo_code, meaning):
    step = "import os, signal; os.kill(os.getpid(), 9)" if code < 0 else f"import sys; sys.exit({code})"
    with pytest.raises(SystemExit) as stopped:
        demo.run("2. failing step", "-c", step)
    assert stopped.value.code == demo_code
    err = capfd.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"demo stopped: step 2. failing step failed (exit {code}: ") and meaning in err[-1], err

