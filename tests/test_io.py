"""JSONL/JSON I/O: errors name the file and line, writes are atomic, records round-trip, and a write that
fails for want of space or permission says which output and why."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rmood.io import (
    DataError,
    WriteError,
    atomic_dir,
    atomic_open,
    atomic_path,
    iter_jsonl,
    read_json,
    read_jsonl,
    remove_stale_temporaries,
    write_json,
    write_jsonl,
)


class Boom(Exception):
    pass


def leftovers(folder: Path, keep: set[str]) -> list[str]:
    """Names in `folder` other than `keep` (temporary files and folders left behind)."""
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


# --- reading ------------------------------------------------------------------------------------


def test_read_jsonl_happy_path(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"id": "p1", "n": 1}\n{"id": "p2", "n": [1, 2]}\n', encoding="utf-8")
    assert read_jsonl(path, required=("id",)) == [{"id": "p1", "n": 1}, {"id": "p2", "n": [1, 2]}]
    iterator = iter_jsonl(path)
    assert next(iterator) == {"id": "p1", "n": 1}  # lazy: one record at a time
    assert list(iterator) == [{"id": "p2", "n": [1, 2]}]


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('\n{"a": 1}\n   \n\t\n{"a": 2}\n\n', encoding="utf-8")
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]


def test_malformed_json_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": \n{"a": 4}\n', encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{path}:3:")) as err:
        read_jsonl(path)
    assert "malformed JSON" in str(err.value)


def test_line_numbers_count_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n\n\nnot json\n', encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{path}:4:")):
        read_jsonl(path)


def test_records_before_the_bad_line_are_yielded(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n{oops\n', encoding="utf-8")
    iterator = iter_jsonl(path)
    assert next(iterator) == {"a": 1}
    with pytest.raises(DataError, match=re.escape(f"{path}:2:")):
        next(iterator)


@pytest.mark.parametrize(("line", "kind"), [("[1, 2]", "list"), ('"text"', "str"), ("3", "int"), ("null", "NoneType")])
def test_non_object_line(tmp_path: Path, line: str, kind: str) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text(f'{{"a": 1}}\n{line}\n', encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{path}:2: expected a JSON object, got {kind}")):
        read_jsonl(path)


def test_missing_required_field_names_field_and_line(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"id": "x", "messages": []}\n{"id": "y"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{path}:2:")) as err:
        read_jsonl(path, required=("id", "messages"))
    assert str(err.value).endswith("missing field(s) messages")  # only the absent field is named


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.jsonl"
    with pytest.raises(DataError, match=re.escape(f"{path}: no such file")):
        read_jsonl(path)
    with pytest.raises(DataError, match=re.escape(f"{tmp_path}: no such file")):
        read_jsonl(tmp_path)  # a directory is not a JSONL file either


def test_read_json_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    with pytest.raises(DataError, match=re.escape(f"{missing}: no such file")):
        read_json(missing)
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "a": 1,\n  "b": \n}\n', encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{broken}:4:")):
        read_json(broken)


def test_write_json_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "doc.json"
    doc = {"b": [1, 2.5, None], "a": {"ü": "名前"}}
    write_json(path, doc)
    assert read_json(path) == doc
    assert path.read_text(encoding="utf-8").endswith("\n")


# --- writing ------------------------------------------------------------------------------------


def test_write_jsonl_round_trip_with_unicode(tmp_path: Path) -> None:
    records = [
        {"id": "ü", "text": "naïve café — 東京 🙂", "n": 3},
        {"id": "line\nbreak", "text": "tab\tand \u2028 separator \x85", "nested": {"k": [1.5, None, True]}},
    ]
    path = tmp_path / "deep" / "out.jsonl"  # parent folders are created
    assert write_jsonl(path, records) == 2
    assert read_jsonl(path) == records
    text = path.read_text(encoding="utf-8")
    assert "東京" in text  # written as UTF-8, not \u escapes
    assert text.count("\n") == 2  # one record per line, embedded newlines escaped


def test_write_jsonl_accepts_a_generator_and_empty_input(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    assert write_jsonl(path, ({"i": i} for i in range(5))) == 5
    assert [r["i"] for r in read_jsonl(path)] == list(range(5))
    assert write_jsonl(path, []) == 0
    assert path.read_text(encoding="utf-8") == ""


def test_atomic_open_keeps_previous_content_on_error(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    path.write_text("old", encoding="utf-8")
    with pytest.raises(Boom), atomic_open(path) as f:
        f.write("half-written")
        raise Boom
    assert path.read_text(encoding="utf-8") == "old"
    assert leftovers(tmp_path, {"out.txt"}) == []


def test_atomic_open_creates_nothing_on_error(tmp_path: Path) -> None:
    path = tmp_path / "new.txt"
    with pytest.raises(Boom), atomic_open(path) as f:
        f.write("half-written")
        raise Boom
    assert not path.exists()
    assert leftovers(tmp_path, set()) == []


def test_atomic_open_replaces_on_success(tmp_path: Path) -> None:
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with atomic_open(path, "wb") as f:
        f.write(b"new")
        assert path.read_bytes() == b"old"  # not visible before the block ends
    assert path.read_bytes() == b"new"
    assert leftovers(tmp_path, {"out.bin"}) == []


def test_write_jsonl_failing_midway_keeps_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    write_jsonl(path, [{"a": 1}])

    def records():
        yield {"a": 2}
        raise Boom

    with pytest.raises(Boom):
        write_jsonl(path, records())
    assert read_jsonl(path) == [{"a": 1}]
    assert leftovers(tmp_path, {"out.jsonl"}) == []


def test_atomic_path_keeps_previous_content_on_error(tmp_path: Path) -> None:
    path = tmp_path / "arr.npy"
    path.write_bytes(b"old")
    with pytest.raises(Boom), atomic_path(path) as tmp:
        assert tmp.parent == tmp_path and tmp != path
        tmp.write_bytes(b"new")
        raise Boom
    assert path.read_bytes() == b"old"
    assert leftovers(tmp_path, {"arr.npy"}) == []


def test_atomic_path_replaces_on_success(tmp_path: Path) -> None:
    path = tmp_path / "arr.npy"
    with atomic_path(path) as tmp:
        tmp.write_bytes(b"new")
        assert not path.exists()
    assert path.read_bytes() == b"new"
    assert leftovers(tmp_path, {"arr.npy"}) == []


def test_atomic_dir_keeps_previous_dir_on_error(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "config.json").write_text("old", encoding="utf-8")
    with pytest.raises(Boom), atomic_dir(target) as tmp:
        assert tmp.is_dir() and tmp != target and tmp.parent == tmp_path
        (tmp / "config.json").write_text("new", encoding="utf-8")
        raise Boom
    assert sorted(p.name for p in target.iterdir()) == ["config.json"]
    assert (target / "config.json").read_text(encoding="utf-8") == "old"
    assert leftovers(tmp_path, {"model"}) == []


def test_atomic_dir_creates_nothing_on_error(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with pytest.raises(Boom), atomic_dir(target) as tmp:
        (tmp / "weights").write_bytes(b"x")
        raise Boom
    assert not target.exists()
    assert leftovers(tmp_path, set()) == []


def test_atomic_dir_replaces_an_existing_dir(tmp_path: Path) -> None:
    target = tmp_path / "model"
    (target / "sub").mkdir(parents=True)
    (target / "stale.bin").write_bytes(b"stale")
    (target / "sub" / "x").write_bytes(b"stale")
    with atomic_dir(target) as tmp:
        (tmp / "config.json").write_text("{}", encoding="utf-8")
        assert (target / "stale.bin").exists()  # old content still in place while writing
    assert sorted(p.name for p in target.iterdir()) == ["config.json"]  # nothing stale survives
    assert leftovers(tmp_path, {"model"}) == []


def test_atomic_dir_replaces_a_file(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.write_bytes(b"a file in the way")
    with atomic_dir(target) as tmp:
        (tmp / "config.json").write_text("{}", encoding="utf-8")
    assert target.is_dir() and (target / "config.json").is_file()


# --- properties ---------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
json_records = st.dictionaries(st.text(max_size=8), json_values, max_size=5)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(json_records, max_size=6))
def test_property_jsonl_round_trip(tmp_path: Path, records: list[dict]) -> None:
    path = tmp_path / "prop.jsonl"
    assert write_jsonl(path, records) == len(records)
    assert read_jsonl(path) == records


line_text = st.text(alphabet=st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)), max_size=30)
json_like_line = st.one_of(line_text, json_records.map(json.dumps), st.sampled_from(["{", "}", "[]", "{}", '{"a":', "null", " "]))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(json_like_line, max_size=6))
def test_property_arbitrary_lines_parse_or_name_a_line(tmp_path: Path, lines: list[str]) -> None:
    path = tmp_path / "prop.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    try:
        records = read_jsonl(path)
    except DataError as err:
        match = re.match(rf"{re.escape(str(path))}:(\d+): ", str(err))
        assert match, str(err)
        lineno = int(match.group(1))
        assert 1 <= lineno <= len(lines)
        bad = lines[lineno - 1]
        try:
            parsed = json.loads(bad)
        except ValueError:
            return  # the named line is indeed not JSON
        assert not isinstance(parsed, dict), f"line {lineno} is a JSON object: {bad!r}"
    else:
        assert all(isinstance(r, dict) for r in records)
        assert records == [json.loads(line) for line in lines if line.strip()]


# --- known gaps (see the report): errors that do not name the file and line --------------------


def test_huge_integer_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"a": 1}\n{"a": ' + "1" * 5000 + "}\n", encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{path}:2:")):
        read_jsonl(path)


def test_invalid_utf8_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": "\xff"}\n')
    with pytest.raises(DataError, match=re.escape(str(path))):
        read_jsonl(path)


KILLED_WRITER = """
import os, signal, sys
from rmood.io import atomic_dir, atomic_path
folder = sys.argv[1]
with atomic_path(f"{folder}/center.png") as tmp:
    tmp.write_bytes(b"half")
    with atomic_dir(f"{folder}/model") as model:
        (model / "weights").write_bytes(b"half")
        os.kill(os.getpid(), signal.SIGKILL)  # no finally block runs
"""


def test_the_temporaries_of_a_killed_writer_are_removed_by_the_next_writer_of_that_output(tmp_path: Path) -> None:
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(tmp_path)])
    assert killed.returncode == -9
    left = leftovers(tmp_path, set())
    assert [name.split(".")[1] for name in left] == ["center", "model"] and all(n.endswith(".tmp") for n in left)
    others = [".center.png.other.tmp", ".center.png.x.abcdefgh.tmp", ".other.png.abcdefgh.tmp", "center.png.tmp"]
    for name in others:  # not a temporary of center.png: another output's, or not made by atomic_path
        (tmp_path / name).touch()
    assert [p.name for p in remove_stale_temporaries(tmp_path / "center.png")] == [left[0]]
    assert [p.name for p in remove_stale_temporaries(tmp_path / "model")] == [left[1]]
    assert leftovers(tmp_path, set()) == sorted(others)
    assert remove_stale_temporaries(tmp_path / "missing" / "out.json") == []


def test_atomic_outputs_get_the_usual_permissions(tmp_path: Path) -> None:
    import os
    import stat

    from rmood.io import UMASK, atomic_dir, write_jsonl

    write_jsonl(tmp_path / "a.jsonl", [{"a": 1}])
    with atomic_dir(tmp_path / "d"):
        pass
    assert stat.S_IMODE(os.stat(tmp_path / "a.jsonl").st_mode) == 0o666 & ~UMASK
    assert stat.S_IMODE(os.stat(tmp_path / "d").st_mode) == 0o777 & ~UMASK


def test_link_dir_copies_a_folder_with_hard_links(tmp_path: Path) -> None:
    from rmood.io import link_dir

    (tmp_path / "src" / "sub").mkdir(parents=True)
    (tmp_path / "src" / "a.txt").write_text("a")
    (tmp_path / "src" / "sub" / "b.txt").write_text("b")
    (tmp_path / "dst").mkdir()
    (tmp_path / "dst" / "old.txt").write_text("old")
    link_dir(tmp_path / "src", tmp_path / "dst")
    assert sorted(str(p.relative_to(tmp_path / "dst")) for p in (tmp_path / "dst").rglob("*")) == [
        "a.txt", "sub", "sub/b.txt"]
    assert (tmp_path / "dst" / "a.txt").stat().st_ino == (tmp_path / "src" / "a.txt").stat().st_ino
    shutil.rmtree(tmp_path / "src")
    assert (tmp_path / "dst" / "sub" / "b.txt").read_text() == "b"


# --- failures to write: one message naming the output and the cause -----------------------------


def test_an_output_under_a_file_names_that_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    for path in (blocker / "a.json", blocker / "sub" / "a.json"):
        with pytest.raises(WriteError, match=re.escape(f"cannot write {path}: {blocker} is a file, not a directory")):
            write_json(path, {})
    with pytest.raises(WriteError) as err, atomic_dir(blocker / "model"):
        pass
    assert err.value.errno == errno.ENOTDIR and err.value.filename == str(blocker / "model")
    assert isinstance(err.value, OSError)


def test_other_errors_in_the_block_pass_unchanged(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError), atomic_open(tmp_path / "a.json") as f:
        f.write(open(tmp_path / "missing.json").read())  # an input that is not there: not a write failure
    with pytest.raises(PermissionError), atomic_dir(tmp_path / "d"):
        raise PermissionError(errno.EACCES, "Permission denied", "some/input")
    assert leftovers(tmp_path, set()) == []


def without_permission_overrides() -> None:
    """preexec_fn: as root, drop the capabilities that ignore file modes (they are gone after exec), so that
    a mode 0555 folder refuses root's writes too; as anyone else, nothing to do."""
    import ctypes

    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2, 3):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
        if libc.prctl(24, capability, 0, 0, 0):  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def write_read_only(folder: Path, args: list[str]) -> subprocess.CompletedProcess:
    """Run `python args` in a child that cannot write into `folder` (mode 0555)."""
    folder.chmod(0o555)
    try:
        return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120,
                              preexec_fn=without_permission_overrides)
    finally:
        folder.chmod(0o755)


TINY_DISK = """
import os, subprocess, sys
if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", sys.argv[1]]).returncode:
    sys.exit(77)
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""


def write_full_disk(folder: Path, args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `python args` with `folder` a 64 KiB tmpfs of its own, in a private mount namespace (no one else sees
    the mount; it goes with the child). Skips where namespaces or mounts are not allowed."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("needs unshare (util-linux)")
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    result = subprocess.run([unshare, *user, "--mount", "--", sys.executable, "-c", TINY_DISK, str(folder), *args],
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode == 77 or (result.returncode and result.stderr.startswith("unshare:")):
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()[-300:]}")
    return result


WRITERS = """
import json, sys
from pathlib import Path
import numpy as np
from safetensors.numpy import save_file
from rmood.io import WriteError, atomic_dir, atomic_path, write_json, write_jsonl

folder = Path(sys.argv[1])
def big_jsonl():
    write_jsonl(folder / "out.jsonl", ({"text": "x" * 1000} for _ in range(200)))
def big_model():  # safetensors reports a full disk as its own error, not an OSError
    with atomic_dir(folder / "model") as tmp:
        save_file({"w": np.zeros(100_000, np.float32)}, str(tmp / "model.safetensors"))
def big_array():  # NumPy reports a short write without an errno
    with atomic_path(folder / "a.npy") as tmp, open(tmp, "wb") as f:
        np.save(f, np.zeros(100_000), allow_pickle=False)
def big_torch():  # torch.save (a Trainer's optimizer state) fails with a RuntimeError without errno
    import torch
    with atomic_path(folder / "optimizer.pt") as tmp:
        torch.save({"w": torch.zeros(100_000)}, tmp)
def nested():
    write_json(folder / "sub" / "a.json", {})
# (torch's writer holds its unlinked file until collected: last)
for name, write in [("jsonl", big_jsonl), ("model", big_model), ("array", big_array), ("nested", nested),
                    ("torch", big_torch)]:
    try:
        write()
        print(name, "written")
    except WriteError as err:
        print(name, err.errno, err)
print(json.dumps(sorted(p.name for p in folder.iterdir())))
"""


def test_a_full_disk_names_the_output_and_leaves_nothing_behind(tmp_path: Path) -> None:
    folder = tmp_path / "disk"
    folder.mkdir()
    result = write_full_disk(folder, ["-c", WRITERS, str(folder)])
    assert result.returncode == 0, result.stderr
    full = f"No space left on device (the file system of {folder} is full)"
    assert result.stdout.splitlines() == [
        f"jsonl 28 cannot write {folder}/out.jsonl: {full}",
        f"model 28 cannot write {folder}/model: {full}",
        f"array 28 cannot write {folder}/a.npy: {full}",
        "nested written",  # the failed writes freed their space
        f"torch 28 cannot write {folder}/optimizer.pt: {full}",
        '["sub"]',  # no temporary file is left to keep the disk full
    ]


def test_a_read_only_folder_names_the_output_and_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    result = write_read_only(folder, ["-c", WRITERS, str(folder)])
    assert result.returncode == 0, result.stderr
    denied = f"Permission denied ({folder} is not writable by this process)"
    assert result.stdout.splitlines() == [
        f"jsonl 13 cannot write {folder}/out.jsonl: {denied}",
        f"model 13 cannot write {folder}/model: {denied}",
        f"array 13 cannot write {folder}/a.npy: {denied}",
        f"nested 13 cannot write {folder}/sub/a.json: {denied}",
        f"torch 13 cannot write {folder}/optimizer.pt: {denied}",
        "[]",
    ]
