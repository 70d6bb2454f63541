"""What a submission brings in: paths only under --allow_dir (symlinks and .. resolved), uploads that never
stay half-written: a full disk answers 507 and leaves nothing behind (a real server whose file size limit
makes its writes fail as on a full disk)."""
import os
import resource

import pytest

from service_setup import Server, make_models
from video_tag.service.intake import Refused, allowed_path, check_space, upload_suffix


def test_allowed_path(tmp_path):
    allowed, other = tmp_path / "videos", tmp_path / "videos-other"
    (allowed / "sub").mkdir(parents=True)
    other.mkdir()
    (allowed / "sub" / "a.mp4").write_bytes(b"x")
    (other / "b.mp4").write_bytes(b"x")
    (allowed / "in.mp4").symlink_to(allowed / "sub" / "a.mp4")
    (allowed / "out.mp4").symlink_to(other / "b.mp4")
    (allowed / "outdir").symlink_to(other)
    dirs = [os.path.realpath(allowed)]
    assert allowed_path(str(allowed / "sub" / ".." / "sub" / "a.mp4"), dirs) == os.path.realpath(allowed / "sub" / "a.mp4")
    assert allowed_path(str(allowed / "in.mp4"), dirs) == os.path.realpath(allowed / "sub" / "a.mp4")
    for path, status in [(allowed / ".." / "videos-other" / "b.mp4", 403),  # a sibling sharing the prefix
                         (allowed / "out.mp4", 403), (allowed / "outdir" / "b.mp4", 403),
                         (allowed / "sub" / "none.mp4", 404), (allowed / "sub", 404)]:
        with pytest.raises(Refused) as e:
            allowed_path(str(path), dirs)
        assert e.value.status == status, path
    with pytest.raises(Refused) as e:
        allowed_path(str(allowed / "sub" / "a.mp4"), [])
    assert e.value.status == 403 and "--allow_dir" in e.value.message
    with pytest.raises(Refused) as e:
        allowed_path(42, dirs)
    assert e.value.status == 422


def test_upload_suffix_and_free_space(tmp_path):
    assert [upload_suffix(n) for n in ("a.MP4", "b", "../../x.sh;rm", "c.toolongext", None)] == \
        [".mp4", ".video", ".video", ".video", ".video"]
    check_space(str(tmp_path), 1, 0)
    with pytest.raises(Refused) as e:
        check_space(str(tmp_path), 0, 1 << 60)
    assert e.value.status == 507


def limit_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))  # writes past 1 MB fail (EFBIG), as on a full disk


def test_a_full_disk_answers_507_and_leaves_nothing(tmp_path, tsn50_release):
    (tmp_path / "models").mkdir()
    flags = make_models(tmp_path / "models", tsn50_release)
    server = Server(tmp_path / "data", flags + ["--workers=0"], wait_ready=False, preexec_fn=limit_file_size)
    try:
        with server.client() as client:
            answer = client.post("/v1/jobs", files={"video": ("big.mp4", os.urandom(3 << 19))})  # 1.5 MB
            assert answer.status_code == 507, answer.text
            assert "disk is full" in answer.json()["error"]
            assert os.listdir(tmp_path / "data" / "uploads") == []
            small = client.post("/v1/jobs", files={"video": ("small.mp4", os.urandom(100000))})
            assert small.status_code == 202  # the service goes on
            assert os.listdir(tmp_path / "data" / "uploads") == [small.json()["id"] + ".mp4"]
            assert client.get(f"/v1/jobs/{small.json()['id']}").json()["state"] == "queued"  # no workers
            assert client.get("/readyz").status_code == 503
            assert client.post("/v1/tag", files={"video": ("s.mp4", b"x")}).status_code == 503  # nobody would answer
    finally:
        server.stop()
