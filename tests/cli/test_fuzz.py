"""The CLI under fuzzing: hostile option values and damaged output directories for every
command (run, sql and its shell, report, catalog, similar, publish, generate). Every call
ends with exit 0, or exit 2 and exactly one ``digestflow: error:`` line on stderr: never an
escaped exception (a traceback), never a hang (each call is bounded by an alarm).

Calls run in-process through ``main()`` (a subprocess per example would cost a second of
imports each); a few cases at the end run the console entry point as a real process. One
small output is built once and copied for every example before it is damaged."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from beam_jobs.cli.main import main
from beam_jobs.query.catalog import report_names
from beam_jobs.synthetic.generator import GeneratorConfig, generate

# No single call in this file needs more than a few seconds; one that takes this long hangs.
CALL_SECONDS = 120
TABLES = ["records", "clusters", "dead_letter", "inputs", "lsh_bands", "embeddings"]
FUZZ = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Hung(Exception):
    """A call did not return within CALL_SECONDS."""


@contextlib.contextmanager
def alarm(seconds: int) -> Iterator[None]:
    def ring(signum, frame):
        raise Hung(f"no answer after {seconds} s")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def call(argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    """``main(argv)`` in-process: exit status, stdout, stderr. An exception escaping main()
    is what a user would see as a traceback: it fails the test as it is."""
    out, err = io.StringIO(), io.StringIO()
    saved_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with alarm(CALL_SECONDS), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = main(argv)
            except SystemExit as exit_:  # argparse's --help
                status = exit_.code if isinstance(exit_.code, int) else 2
    finally:
        sys.stdin = saved_stdin
    return status, out.getvalue(), err.getvalue()


def check(argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    status, out, err = call(argv, stdin)
    event(f"exit {status}")
    assert status in (0, 2), (argv, status, err)
    assert "Traceback" not in err, (argv, err)
    if status == 2:
        errors = [line for line in err.splitlines() if line.startswith("digestflow: error:")]
        assert len(errors) == 1, (argv, err)
    return status, out, err


# ---- one good output, copied and damaged per example ---------------------------------------


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def dumps(workspace: Path) -> Path:
    out = workspace / "dumps"
    generate(out, GeneratorConfig(records=40, seed=9, records_per_file=20, malformed_rate=0.05))
    return out


@pytest.fixture(scope="module")
def outputs(workspace: Path, dumps: Path) -> dict[str, Path]:
    """``plain``: a run with ``--no_embeddings``. ``embedded``: a copy whose records carry
    unit vectors, so ``similar`` has something to rank without an embedding run."""
    plain = workspace / "plain"
    argv = ["run", f"--input={dumps}/*.txt", f"--output={plain}", "--no_embeddings", "--quiet"]
    assert call(argv)[0] == 0
    embedded = workspace / "embedded"
    shutil.copytree(plain, embedded)
    for path in (version_dir(embedded) / "records").glob("*.parquet"):
        schema = pq.read_schema(path)
        field = schema.field("embedding")
        rows = pq.read_table(path, columns=[n for n in schema.names if n != "embedding"])
        vectors = np.random.default_rng(0).normal(size=(rows.num_rows, field.type.list_size))
        vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype("float32")
        column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), field.type.list_size)
        rows = rows.append_column(field, column.cast(field.type))
        pq.write_table(rows.select(schema.names).cast(schema), path)
    # the rewritten files no longer match the commit record: make this copy an output from
    # before the commit log (manifest.json alone, no file list), which covers that reader too
    shutil.rmtree(embedded / "commits")
    manifest = json.loads((embedded / "manifest.json").read_text())
    manifest.pop("files", None)
    (embedded / "manifest.json").write_text(json.dumps(manifest))
    return {"plain": plain, "embedded": embedded}


@contextlib.contextmanager
def scratch(workspace: Path) -> Iterator[Path]:
    """A fresh directory per example (hypothesis reuses the test's own fixtures)."""
    path = Path(tempfile.mkdtemp(dir=workspace, prefix="example-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def version_dir(out: Path) -> Path:
    """The version directory of a copy of a one-version output (found before any damage)."""
    return sorted(p for p in out.glob("v0*") if p.is_dir())[-1]


def resolve(out: Path, relative: str) -> Path:
    """``ROOT/...``: inside the version directory; ``TRUSTED``: the file a reader takes the
    current version from (the newest commit record, else ``manifest.json``)."""
    if relative == "TRUSTED":
        records = sorted((out / "commits").glob("*.json"))
        return records[-1] if records else out / "manifest.json"
    if relative.startswith("ROOT"):
        return version_dir(out) / relative.removeprefix("ROOT").lstrip("/")
    return out / relative


def _parquet_files(out: Path, table: str) -> list[Path]:
    return sorted((version_dir(out) / table).glob("*.parquet"))


def _damage_file(table: str, how: str, where: float, junk: bytes) -> Callable[[Path], None]:
    def damage(out: Path) -> None:
        for path in _parquet_files(out, table)[:1]:
            data = path.read_bytes()
            cut = int(len(data) * where)
            if how == "truncate":
                path.write_bytes(data[:cut])
            elif how == "garble":
                path.write_bytes(data[:cut] + junk + data[cut + len(junk) :])
            elif how == "delete":
                path.unlink()
            elif how == "directory":
                path.unlink()
                path.mkdir()
            elif how == "foreign":  # another table's file among this table's
                other = _parquet_files(out, "clusters" if table != "clusters" else "records")
                shutil.copy(other[0], path.with_name("part-foreign.parquet"))

    return damage


def _json_values() -> st.SearchStrategy:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(-(10**20), 10**20)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=12)
        | st.sampled_from(["v000001", "v000002", "../v000001", "/", "v1"])
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
        max_leaves=6,
    )


def _manifest_field(key: str, value) -> Callable[[Path], None]:
    def damage(out: Path) -> None:
        target = resolve(out, "TRUSTED")
        if not target.is_file():
            return  # an earlier damage removed it
        document = json.loads(target.read_text())
        if value is _DELETE:
            document.pop(key, None)
        else:
            document[key] = value
        target.write_text(json.dumps(document))

    return damage


_DELETE = object()


def _write(relative: str, payload: bytes) -> Callable[[Path], None]:
    def damage(out: Path) -> None:
        target = resolve(out, relative)
        if target.parent.is_dir():
            target.write_bytes(payload)

    return damage


def _remove(relative: str) -> Callable[[Path], None]:
    def damage(out: Path) -> None:
        target = resolve(out, relative)
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()

    return damage


def _replace_by_file(relative: str) -> Callable[[Path], None]:
    def damage(out: Path) -> None:
        target = resolve(out, relative)
        _remove(relative)(out)
        target.write_text("not a directory")

    return damage


# The metadata a reader trusts (the newest commit record, or manifest.json without one), and
# manifest.json itself (with a commit log it is a copy for people and older readers).
MANIFESTS = st.sampled_from(["TRUSTED", "manifest.json"])
damages = st.one_of(
    st.just(lambda out: None),
    st.builds(
        _damage_file,
        st.sampled_from(TABLES),
        st.sampled_from(["truncate", "garble", "delete", "directory", "foreign"]),
        st.floats(0, 1),
        st.binary(min_size=1, max_size=64),
    ),
    st.builds(_write, MANIFESTS, st.binary(max_size=64)),
    st.builds(_write, MANIFESTS, _json_values().map(lambda v: json.dumps(v).encode())),
    st.builds(
        _manifest_field,
        st.sampled_from(["format", "version", "root", "settings", "files"]),
        _json_values() | st.just(_DELETE),
    ),
    st.builds(_write, st.just("ROOT/run_summary.json"), st.binary(max_size=64)),
    st.builds(
        _remove,
        st.sampled_from(["TRUSTED", "manifest.json", "commits", "ROOT", "ROOT/run_summary.json"])
        | st.sampled_from(TABLES).map(lambda t: f"ROOT/{t}"),
    ),
    st.builds(
        _replace_by_file,
        st.sampled_from(["ROOT", "ROOT/records", "ROOT/clusters", "commits"]),
    ),
)


def damaged_copy(source: Path, into: Path, damage: Callable[[Path], None], name: str) -> Path:
    out = into / name
    shutil.copytree(source, out)
    damage(out)
    return out


def odd_dirs(into: Path) -> dict[str, Path]:
    """DIR arguments that are no output at all."""
    (into / "empty").mkdir(exist_ok=True)
    (into / "a-file").write_text("x")
    return {"missing": into / "missing", "empty": into / "empty", "file": into / "a-file"}


dir_names = st.sampled_from(["out", "out[1]", "o u t", "out*?", "-out"])
formats = st.sampled_from(["table", "csv", "json", "xml", ""])
numbers = st.one_of(
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(["0", "-1", "1", "nan", "inf", "-inf", "1e309", "0x10", " 3", ""]),
    st.text(max_size=6),
)


def pick_dir(data, outputs: dict[str, Path], into: Path) -> str:
    kind = data.draw(st.sampled_from(["damaged", "damaged", "damaged", "odd"]), label="dir")
    if kind == "odd":
        return str(data.draw(st.sampled_from(sorted(odd_dirs(into).items())))[1])
    source = outputs[data.draw(st.sampled_from(sorted(outputs)), label="output")]
    damage = data.draw(damages, label="damage")
    return str(damaged_copy(source, into, damage, data.draw(dir_names, label="name")))


# ---- the query commands ---------------------------------------------------------------------

QUERIES = [
    "SELECT count(*) FROM records",
    "SELECT title, cluster_size FROM papers ORDER BY record_id LIMIT 3",
    "SELECT reason, count(*) FROM dead_letter GROUP BY 1",
    "SELECT * FROM inputs",
    "SELECT nonsense FROM records",
    "SELECT 1; SELECT 2",
    "",
    ";",
    "CREATE TABLE t AS SELECT 1",
]
SHELL_LINES = [
    *(f"{q};" for q in QUERIES),
    ".tables",
    ".schema records",
    ".schema nonsense",
    ".schema",
    ".report overview",
    ".report nonsense",
    ".help",
    ".bogus",
    ".quit",
    "SELECT",
    "  1 +",
]


@given(data=st.data())
@FUZZ
def test_sql_and_its_shell(outputs, workspace, data) -> None:
    with scratch(workspace) as into:
        dir_ = pick_dir(data, outputs, into)
        fmt = ["--format", data.draw(formats)] if data.draw(st.booleans()) else []
        if data.draw(st.booleans(), label="shell"):
            lines = data.draw(st.lists(st.sampled_from(SHELL_LINES) | st.text(max_size=20)))
            check(["sql", dir_, *fmt], stdin="\n".join(lines))
        else:
            query = data.draw(st.sampled_from(QUERIES) | st.text(max_size=40), label="query")
            check(["sql", dir_, query, *fmt])


@given(data=st.data())
@FUZZ
def test_catalog(outputs, workspace, data) -> None:
    with scratch(workspace) as into:
        dir_ = pick_dir(data, outputs, into)
        flags = data.draw(st.lists(st.sampled_from(["--sql", "--format=csv", "--format=x"])))
        check(["catalog", dir_, *flags])


@given(data=st.data())
@FUZZ
def test_verify_and_snapshots(outputs, workspace, data) -> None:
    with scratch(workspace) as into:
        dir_ = pick_dir(data, outputs, into)
        snapshot = st.sampled_from(["1", "2", "0", "-1", "999", "x", ""]) | st.text(max_size=6)
        flags = data.draw(st.lists(st.sampled_from(["--format=csv", "--snapshot"]), max_size=2))
        argv = [
            flag for f in flags for flag in ([f, data.draw(snapshot)] if f == "--snapshot" else [f])
        ]
        command = data.draw(st.sampled_from(["verify", "sql", "catalog"]))
        check([command, dir_, *argv, *(["SELECT 1"] if command == "sql" else [])])


@given(data=st.data())
@FUZZ
def test_report(outputs, workspace, data) -> None:
    with scratch(workspace) as into:
        dir_ = pick_dir(data, outputs, into)
        name = data.draw(
            st.sampled_from([*report_names(), "../overview", ""]) | st.text(max_size=8)
        )
        flags = data.draw(
            st.lists(
                st.sampled_from(["--list", "--sql", "--format=json", "--format=x", "--html"]),
                max_size=3,
            )
        )
        # --html takes the page's path: a fresh file, an existing directory, a glob name
        argv = []
        for flag in flags:
            argv.append(flag)
            if flag == "--html":
                page = data.draw(st.sampled_from(["page.html", "p[1]/page.html", "."]))
                argv.append(str(into / page))
        check(["report", dir_, name, *argv])


@given(data=st.data())
@FUZZ
def test_similar(outputs, workspace, data) -> None:
    with scratch(workspace) as into:
        dir_ = pick_dir(data, outputs, into)
        text = data.draw(st.text(max_size=30), label="text")
        argv = ["similar", dir_, text]
        if data.draw(st.booleans()):
            argv += ["-k", data.draw(numbers | st.integers(1, 1000).map(str), label="k")]
        model = data.draw(st.sampled_from([None, "missing", "empty", "file"]), label="model")
        if model is not None:
            (into / "empty-model").mkdir(exist_ok=True)
            (into / "file-model").write_text("x")
            argv += ["--model", str(into / f"{model}-model")]
        check(argv)


@given(data=st.data())
@FUZZ
def test_publish(outputs, workspace, data) -> None:
    """Mostly what publish is for: a version directory and no manifest (then damaged)."""
    with scratch(workspace) as into:
        if data.draw(st.booleans(), label="no manifest"):
            # what a detached job leaves: a version directory, no commit record, no manifest
            out = damaged_copy(outputs["plain"], into, _remove("commits"), "job")
            _remove("manifest.json")(out)
            version_dir(out).rename(out / "v000001")  # a job's fixed directory name
            data.draw(damages, label="then")(out)
            dir_ = str(out)
        else:
            dir_ = pick_dir(data, outputs, into)
        status, _, _ = check(["publish", dir_])
        if status == 0:
            assert check(["sql", dir_, "SELECT count(*) FROM papers"])[0] in (0, 2)


# ---- generate and run -----------------------------------------------------------------------


@given(data=st.data())
@settings(FUZZ, max_examples=20)
def test_generate(workspace, data) -> None:
    with scratch(workspace) as into:
        (into / "full").mkdir()
        (into / "full" / "x.txt").write_text("x")
        (into / "file").write_text("x")
        out = into / data.draw(st.sampled_from(["new", "new[1]", "full", "file", "file/below"]))
        # --records always: its default (thousands of records) is not hostile, only slow
        records = data.draw(st.integers(-3, 30).map(str) | numbers, label="--records")
        argv = ["generate", "--out", str(out), "--records", records]
        options = {
            "--seed": st.integers(-(2**70), 2**70).map(str) | numbers,
            "--malformed_rate": st.floats(allow_nan=True).map(str) | numbers,
            "--compress": st.sampled_from(["gz", "bz2", "mixed", "zip", ""]),
        }
        for option, values in options.items():
            if data.draw(st.booleans(), label=option):
                argv += [option, data.draw(values, label=f"{option} value")]
        if data.draw(st.booleans(), label="--overwrite"):
            argv.append("--overwrite")
        if records.strip().lstrip("-").isdigit() and int(records) > 30:
            return  # a big corpus is not hostile, only slow
        status, _, _ = check(argv)
        if status == 0:
            assert list(out.glob("*.txt")) or list(out.glob("*.txt.*"))


# Values for each `run` option: mostly hostile. Options that would start an embedding run
# when valid get hostile values only (an embedding run would take the whole time budget).
RUN_VALUES = {
    "--digest_year": st.integers(-(10**6), 10**6).map(str) | numbers,
    "--threshold": st.floats(allow_nan=True).map(str) | numbers,
    "--num_perm": st.integers(-5, 10**6).map(str) | numbers,
    "--lsh_shards": st.integers(-5, 10**6).map(str) | numbers,
    "--output_shards": st.integers(-5, 10**6).map(str) | numbers,
    "--semantic_threshold": st.floats(allow_nan=True).map(str) | numbers,
    "--semantic_vector_bits": st.sampled_from(["0", "-3", "33", "x", ""]),
    "--semantic_vector_bands": st.sampled_from(["-1", "4097", "x", ""]),
    "--canonical_policy": st.sampled_from(["earliest", "latest", "longest", "newest", ""]),
    "--shingle": st.sampled_from(["word", "char", "byte", ""]),
    "--text_template": st.sampled_from(["{title}", "{nope}", "{", "}", ""]) | st.text(max_size=8),
    "--runner": st.sampled_from(["FnApiRunner", "Bogus", ""]),
    "--direct_num_workers": numbers,
    # files the run reads besides its inputs: see `aside` in test_run
    "--taxonomy": st.sampled_from(["missing", "garbage", "directory"]),
    "--tag_examples": st.sampled_from(["missing", "garbage", "directory"]),
}
ASIDE_FILES = {"--taxonomy", "--tag_examples", "--embedding_model"}
EMBEDDING_VALUES = {
    "--max_seq_length": st.sampled_from(["0", "-1", "100000", "513", "x", "1e9", ""]),
    "--embedding_model": st.sampled_from(["missing", "empty", "file", "garbage"]),
    "--embedding_backend": st.sampled_from(["tensorflow", "", "ONNX"]),
}
RUN_EXTRAS = ["--", "--ouptut=x", "--bogus", "--overwrite", "--incremental", "--quiet", "-h"]


@given(data=st.data())
@settings(FUZZ, max_examples=20)
def test_run(outputs, workspace, dumps, data) -> None:
    with scratch(workspace) as into:
        (into / "empty").mkdir(exist_ok=True)
        (into / "file").write_text("x")
        inputs = {
            "dumps": f"{dumps}/*.txt",
            "one dump": str(sorted(dumps.glob("*.txt"))[0]),
            "no match": f"{into}/nothing-*.txt",
            "a directory": str(dumps),
        }
        source = inputs[data.draw(st.sampled_from(sorted(inputs)), label="input")]
        target = data.draw(st.sampled_from(["new", "new[1]", "existing", "file/below"]))
        if target == "existing":
            output = pick_dir(data, outputs, into)
        else:
            output = str(into / target / "out")
        aside = into / "aside"  # what --taxonomy, --tag_examples, --embedding_model name
        (aside / "directory").mkdir(parents=True)
        (aside / "empty").mkdir()
        (aside / "garbage").write_text("{garbage = [\n")
        (aside / "file").write_text("x")
        argv = ["run", f"--input={source}", f"--output={output}"]
        chosen = st.lists(st.sampled_from(sorted(RUN_VALUES)), max_size=3, unique=True)
        for option in data.draw(chosen, label="options"):
            value = data.draw(RUN_VALUES[option], label=f"{option} value")
            argv.append(f"{option}={aside / value if option in ASIDE_FILES else value}")
        embedding = data.draw(st.sampled_from([None, *EMBEDDING_VALUES]), label="embedding")
        if embedding is None:
            argv.append("--no_embeddings")
        else:
            value = data.draw(EMBEDDING_VALUES[embedding])
            argv.append(f"{embedding}={aside / value if embedding in ASIDE_FILES else value}")
        for extra in data.draw(st.lists(st.sampled_from(RUN_EXTRAS), max_size=2, unique=True)):
            argv.insert(data.draw(st.integers(1, len(argv)), label=f"{extra} at"), extra)
        before = set(into.rglob("*"))
        status, _, _ = check(argv)
        if status == 2 and target != "existing":
            # refused before the pipeline started: nothing written (an existing output is
            # left as it was; its own damage may be what was refused)
            assert set(into.rglob("*")) == before, argv
        assert not [p for p in into.rglob("*") if "probe" in p.name], argv


# ---- a handful as real processes --------------------------------------------------------------


def _cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "beam_jobs.cli.main", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=CALL_SECONDS,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


@pytest.mark.parametrize(
    "case",
    ["garbage manifest, shell", "truncated records, report", "similar -k -1", "generate -5"],
)
def test_as_real_processes(outputs, workspace, case: str) -> None:
    with scratch(workspace) as into:
        out = into / "out[1]"
        shutil.copytree(outputs["plain"], out)
        if case == "garbage manifest, shell":
            resolve(out, "TRUSTED").write_text("{garbage")
            done = _cli("sql", str(out), stdin="SELECT 1;\n")
        elif case == "truncated records, report":
            path = _parquet_files(out, "records")[0]
            path.write_bytes(path.read_bytes()[: math.ceil(path.stat().st_size / 3)])
            done = _cli("report", str(out), "overview")
        elif case == "similar -k -1":
            done = _cli("similar", str(out), "diffusion", "-k", "-1")
        else:
            done = _cli("generate", "--out", str(into / "g"), "--records", "-5")
        assert done.returncode == 2, done.stderr
        assert done.stderr.splitlines() == [done.stderr.strip()], done.stderr
        assert done.stderr.startswith("digestflow: error: ")
