"""Python functions a pipeline names by import path (udf, reduce, callable sinks) are loaded
at check time, from the working directory or the pipeline file's directory, and one that
cannot be loaded is a located diagnostic instead of a traceback at run time."""
from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from dataflow.cli import app

UDF_FLOW = '''pipeline u
udf size(str) -> int = "{path}"
topic words: str
words | map size(_value) | to stdout
'''


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def test_a_udf_that_cannot_be_imported_fails_check_at_its_call(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("u.flow").write_text(UDF_FLOW.format(path="nosuchmodule_xyz:size"))
    result = invoke("check", "u.flow")
    assert result.exit_code == 1
    assert result.stderr == (
        "u.flow:4:13: error: cannot import 'nosuchmodule_xyz' for udf \"nosuchmodule_xyz:size\": No module named "
        "'nosuchmodule_xyz'; a function is named by its import path, \"package.module:function\", found from the "
        "working directory or the pipeline file's directory\n"
        "words | map size(_value) | to stdout\n"
        "            ^~~~~~~~~~~~\n"
        "1 error\n")


def test_a_missing_function_in_a_module_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("udfs_missing_fn.py").write_text("def other(s):\n    return 1\n")
    Path("u.flow").write_text(UDF_FLOW.format(path="udfs_missing_fn:size"))
    result = invoke("check", "u.flow")
    assert result.exit_code == 1
    assert result.stderr.startswith("u.flow:4:13: error: module 'udfs_missing_fn' has no 'size' "
                                    "(udf \"udfs_missing_fn:size\");")


def test_a_udf_beside_the_pipeline_file_runs_from_any_directory(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    (project / "udfs_beside.py").write_text("def size(s):\n    return len(s)\n")
    (project / "u.flow").write_text(UDF_FLOW.format(path="udfs_beside:size"))
    (project / "in.jsonl").write_text('"four"\n"sixsix"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert invoke("check", str(project / "u.flow")).exit_code == 0
    result = invoke("run", str(project / "u.flow"), "--broker", "memory://", "-i", f"words={project / 'in.jsonl'}",
                    "--until-idle", "-q")
    assert (result.exit_code, result.stdout) == (0, '{"key":null,"value":4}\n{"key":null,"value":6}\n')


def test_a_reducer_and_a_callable_sink_are_checked_too(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("p.py").write_text('''
from dataflow import Flow, agg

flow = Flow("p")
words = flow.source("words", value=str)
words.group_by("_value", name="by_word").aggregate({"x": agg.reduce("no_such_reducers_mod:longest", "_value")},
                                                  name="longest").changes().to("out")
''')
    result = invoke("check", "p.py")
    assert result.exit_code == 1
    assert "error: cannot import 'no_such_reducers_mod' for udf \"no_such_reducers_mod:longest\"" in result.stderr
    assert result.stderr.endswith("1 error\n")
