"""Starting the service: a reachable address needs a token; stray uploads of a killed run are removed."""
import os

from conftest import run_script
from video_tag.service.jobs import JobStore
from video_tag.service.server import clean_uploads, loopback


def test_binding_a_reachable_address_needs_a_token(tmp_path):
    assert loopback("127.0.0.1") and loopback("localhost") and loopback("::1")
    assert not loopback("0.0.0.0") and not loopback("192.0.2.7")
    done = run_script("serve.py", "--host=0.0.0.0", f"--data_dir={tmp_path / 'data'}", "--workers=0")
    assert done.returncode == 2, done.stdout
    assert done.stdout.strip().splitlines()[-1].startswith("error: --host 0.0.0.0 is reachable from other machines")
    assert "Traceback" not in done.stdout and not (tmp_path / "data").exists()
    done = run_script("serve.py", "--host=0.0.0.0", "--token=t", f"--data_dir={tmp_path / 'data'}",
                      "--tsn_weights=nope.pdparams")  # with a token it goes on (and stops at the missing weights)
    assert done.returncode == 2 and "error: weight file not found: nope.pdparams" in done.stdout


def test_clean_uploads_keeps_only_what_queued_jobs_need(tmp_path):
    folder = tmp_path / "uploads"
    folder.mkdir()
    store = JobStore(str(tmp_path / "jobs.sqlite3"))
    paths = {name: str(folder / name) for name in ("queued.mp4", "done.mp4", "half.part", "lost.mp4")}
    for path in paths.values():
        open(path, "wb").close()
    store.add("q", paths["queued.mp4"], {}, upload=True)
    ended = store.add("d", paths["done.mp4"], {}, upload=True)
    store.cancel(ended)
    assert clean_uploads(store, str(folder)) == 3
    assert os.listdir(folder) == ["queued.mp4"]
    assert store.ended_uploads() == []
