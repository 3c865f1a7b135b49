"""A .flow file is code: checking or running it imports the Python it names. `--no-import`
checks or plans an untrusted file importing nothing, and says what that leaves unchecked;
`--allow-module` limits what may be imported, refusing the rest at its location before
anything runs."""
from __future__ import annotations

import re
import sys
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dataflow import Flow
from dataflow.cli import app
from dataflow.ir.callables import ImportPolicy
from dataflow.planner import check, not_imported, plan

ROOT = Path(__file__).resolve().parents[1]

ALLOWED_HINT = ("the allowed modules come from --allow-module or DATAFLOW_ALLOWED_MODULES (dotted prefixes or "
                "globs); add this one there only if you trust its code")


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, list(args), env=env)


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATAFLOW_ALLOWED_MODULES", raising=False)
    monkeypatch.delenv("DATAFLOW_NO_IMPORT", raising=False)
    return tmp_path


def marker_module(directory: Path) -> str:
    """A module, new to this process, that leaves a file behind when it is imported."""
    name = f"marker_{uuid.uuid4().hex}"
    (directory / f"{name}.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(directory / (name + '.imported'))!r}).write_text('imported')\n"
        "def size(s):\n    return len(s)\n"
        "def longest(acc, s):\n    return s if len(s) > len(acc or '') else acc\n")
    return name


def imported(directory: Path, name: str) -> bool:
    return (directory / f"{name}.imported").exists() or name in sys.modules


UDF_FLOW = '''pipeline u
udf size(str) -> int = "{module}:size"
topic words: str
topic sizes: int
words | map size(_value) | to topic sizes
'''


def test_check_imports_a_udf_module_by_default(here):
    module = marker_module(here)
    Path("u.flow").write_text(UDF_FLOW.format(module=module))
    result = invoke("check", "u.flow")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "u.flow: ok\n", "")
    assert imported(here, module)


@pytest.mark.parametrize("command", ["check", "plan"])
def test_no_import_checks_and_plans_without_importing_the_udf(here, command):
    module = marker_module(here)
    Path("u.flow").write_text(UDF_FLOW.format(module=module))
    result = invoke(command, "--no-import", "u.flow")
    assert result.exit_code == 0
    # The declared signature is all type checking needs: only loading is left unchecked.
    assert result.stderr == f'u.flow:5:13: note: udf "{module}:size" was not imported: whether it loads is not checked\n'
    assert not imported(here, module)


def test_no_import_still_type_checks_with_the_declared_signature(here):
    module = marker_module(here)
    Path("u.flow").write_text(UDF_FLOW.format(module=module).replace("map size(_value)", 'map upper(size(_value))'))
    result = invoke("check", "--no-import", "u.flow")
    assert result.exit_code == 1
    assert result.stderr.startswith("u.flow:5:19: error: argument 1 of upper() must be str, got int;")
    assert not imported(here, module)


AGENT_APP = '''from dataflow.runtime.app import App

app = App("{module}_app")


@app.agent()
async def quote(stream):
    async for value in stream:
        yield value


@app.agent()
async def audit(stream):
    async for value in stream:
        pass
'''

AGENT_FLOW = '''pipeline shop
topic orders: str
topic quotes
topic totals: int
udf guess("{module}:guess", _value)
'''


def agent_module(directory: Path) -> str:
    name = f"agents_{uuid.uuid4().hex}"
    (directory / f"{name}.py").write_text(
        f"from pathlib import Path\nPath({str(directory / (name + '.imported'))!r}).write_text('imported')\n"
        + AGENT_APP.format(module=name))
    return name


def test_no_import_says_what_it_could_not_verify_about_agents_and_functions(here):
    agents = agent_module(here)
    udfs = marker_module(here)
    Path("shop.flow").write_text(f'''pipeline shop
topic orders: str
topic quotes
topic totals
orders | call agent "{agents}:quote" | to topic quotes
orders | call agent "{agents}:quote" -> str | map udf("{udfs}:size", _value) | to topic totals
orders | to agent "{agents}:audit"
''')
    result = invoke("check", "--no-import", "shop.flow")
    assert (result.exit_code, result.stdout) == (0, "shop.flow: ok\n")
    assert result.stderr == (
        f'shop.flow:5:10: note: agent "{agents}:quote" was not imported: whether it loads and can reply is not '
        "checked, and its reply is typed any\n"
        f'shop.flow:6:10: note: agent "{agents}:quote" was not imported: whether it loads and can reply is not '
        "checked\n"
        f'shop.flow:6:{len(agents) + 43}: note: udf "{udfs}:size" was not imported: whether it loads is not checked, and its result '
        "is typed any\n"
        f'shop.flow:7:10: note: agent "{agents}:audit" was not imported: whether it loads is not checked\n')
    assert not imported(here, agents) and not imported(here, udfs)
    trusted = invoke("check", "shop.flow")
    assert (trusted.exit_code, trusted.stderr) == (0, "")
    assert imported(here, agents) and imported(here, udfs)


def test_the_environment_turns_no_import_on(here):
    module = marker_module(here)
    Path("u.flow").write_text(UDF_FLOW.format(module=module))
    result = invoke("check", "u.flow", env={"DATAFLOW_NO_IMPORT": "1"})
    assert result.exit_code == 0
    assert not imported(here, module)


@pytest.mark.parametrize("ref", ["p.py", "p:flow"])
def test_no_import_refuses_a_python_pipeline_without_running_it(here, ref):
    Path("p.py").write_text(f"from pathlib import Path\nPath({str(here / 'ran')!r}).write_text('ran')\n"
                            "from dataflow import Flow\nflow = Flow('p')\n")
    for command in ("check", "plan"):
        result = invoke(command, "--no-import", ref)
        assert (result.exit_code, result.stdout, result.stderr) == (
            1, "", f"{ref}: a Python pipeline runs when it is loaded; only a .flow file can be checked or planned "
                   "without importing code\n")
    assert not (here / "ran").exists()


def test_no_import_still_refuses_a_file_that_is_not_a_pipeline(here):
    Path("data.jsonl").write_text('{"a": 1}\n')
    result = invoke("check", "--no-import", "data.jsonl")
    assert result.exit_code == 1
    assert result.stderr.startswith("data.jsonl: not a pipeline file;")


SHELL_FLOW = '''pipeline sh
udf sh(str) -> int = "os:system"
topic commands: str
commands | map sh(_value) | to stdout
'''


def test_an_allow_list_refuses_os_system_at_its_call_before_anything_runs(here):
    Path("sh.flow").write_text(SHELL_FLOW)
    Path("in.jsonl").write_text(f'"touch {here / "pwned"}"\n')
    expected = (
        'sh.flow:4:16: error: udf "os:system" may not be imported: module \'os\' is not among the allowed modules '
        f"(mypkg); {ALLOWED_HINT}\n"
        "commands | map sh(_value) | to stdout\n"
        "               ^~~~~~~~~~\n"
        "1 error\n")
    for command in (["check"], ["plan"], ["run", "--broker", "memory://", "-i", "commands=in.jsonl", "--until-idle"]):
        result = invoke(*command, "sh.flow", "--allow-module", "mypkg")
        assert (result.exit_code, result.stdout, result.stderr) == (1, "", expected)
    assert not (here / "pwned").exists()
    from_env = invoke("run", "sh.flow", "--broker", "memory://", "-i", "commands=in.jsonl", "--until-idle",
                      env={"DATAFLOW_ALLOWED_MODULES": "mypkg"})
    assert (from_env.exit_code, from_env.stderr) == (1, expected)
    assert not (here / "pwned").exists()


def test_query_and_ask_honour_the_allow_list_from_the_environment(here):
    Path("sh.flow").write_text(SHELL_FLOW)
    for command in (["query", "sh.flow", "commands"], ["ask", "sh.flow", "commands", "--value", '"x"']):
        result = invoke(*command, env={"DATAFLOW_ALLOWED_MODULES": "mypkg"})
        assert result.exit_code == 1
        assert result.stderr.startswith('sh.flow:4:16: error: udf "os:system" may not be imported')


def test_allowed_modules_are_imported_and_run(here):
    module = marker_module(here)
    Path("u.flow").write_text(UDF_FLOW.format(module=module).replace("to topic sizes", "to stdout"))
    Path("in.jsonl").write_text('"four"\n')
    result = invoke("run", "u.flow", "--broker", "memory://", "-i", "words=in.jsonl", "--until-idle", "-q",
                    "--allow-module", "nothing_else," + module)
    assert (result.exit_code, result.stdout) == (0, '{"key":null,"value":4}\n')


def test_agents_reducers_and_sinks_outside_the_list_are_refused_and_not_imported(here):
    agents = agent_module(here)
    reducers = marker_module(here)
    Path("p.flow").write_text(f'''pipeline p
topic words: str key str
topic quotes
topic longest
words | call agent "{agents}:quote" -> str | to topic quotes
words | group_by _value | aggregate {{ longest: reduce("{reducers}:longest", _value) }} | changes | to topic longest
''')
    result = invoke("check", "p.flow", "--allow-module", "mypkg.*")
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert lines == [
        f'p.flow:5:9: error: agent "{agents}:quote" may not be imported: module \'{agents}\' is not among the '
        f"allowed modules (mypkg.*); {ALLOWED_HINT}",
        f'p.flow:6:27: error: reducer "{reducers}:longest" may not be imported: module \'{reducers}\' is not among '
        f"the allowed modules (mypkg.*); {ALLOWED_HINT}"]
    assert not imported(here, agents) and not imported(here, reducers)


@pytest.mark.parametrize(("allowed", "permitted"), [
    (("mypkg",), [True, True, False, False]),
    (("mypkg.scoring",), [False, True, False, False]),
    (("my*",), [True, True, True, False]),
    (("mypkg.*",), [False, True, False, False]),
    (("os.path", "mypkgx"), [False, False, True, False]),
])
def test_an_entry_is_a_dotted_prefix_or_a_glob(allowed, permitted):
    paths = ["mypkg:f", "mypkg.scoring:risk", "mypkgx.evil:f", "os:system"]
    assert [ImportPolicy(allowed=allowed).permits(p) for p in paths] == permitted


def test_the_python_api_takes_the_policy_too(tmp_path):
    flow = Flow("api")
    flow.source("words", value=str).map(__import__("dataflow").udf("os:system", __import__("dataflow").col("_value"),
                                                                    returns=int)).print()
    policy = ImportPolicy(allowed=("mypkg",))
    assert [d.rule for d in check(flow.topology(), policy)] == ["allowed"]
    assert [d.severity for d in not_imported(flow.topology(), ImportPolicy(imports=False))] == ["note"]
    assert plan(flow.topology(), ImportPolicy(imports=False)).name == "api"


def test_plan_no_import_prints_notes_on_stderr_and_the_plan_on_stdout(here):
    result = invoke("plan", "--no-import", str(ROOT / "examples" / "quotes.flow"))
    trusted = invoke("plan", str(ROOT / "examples" / "quotes.flow"))
    assert (result.exit_code, result.stdout) == (0, trusted.stdout)
    assert [line.split(": note: ")[1].split(" was ")[0] for line in result.stderr.splitlines()] == [
        'agent "storefront.pricing:quote"', 'agent "storefront.pricing:audit"']


def test_no_import_with_an_allow_list_refuses_what_is_outside_and_notes_the_rest(here):
    udfs = marker_module(here)
    Path("u.flow").write_text(SHELL_FLOW.replace("| to stdout", f'| map udf("{udfs}:size", _value) | to stdout'))
    refused = invoke("check", "--no-import", "--allow-module", udfs, "u.flow")
    assert refused.exit_code == 1
    assert [line for line in refused.stderr.splitlines() if ": note: " in line or ": error: " in line] == [
        'u.flow:4:16: error: udf "os:system" may not be imported: module \'os\' is not among the allowed modules '
        f"({udfs}); {ALLOWED_HINT}"]
    allowed = invoke("check", "--no-import", "--allow-module", f"{udfs},os", "u.flow")
    assert (allowed.exit_code, allowed.stdout) == (0, "u.flow: ok\n")
    assert allowed.stderr == (
        'u.flow:4:16: note: udf "os:system" was not imported: whether it loads is not checked\n'
        f'u.flow:4:{len("commands | map sh(_value) | map ") + 1}: note: udf "{udfs}:size" was not imported: whether '
        "it loads is not checked, and its result is typed any\n")
    assert not imported(here, udfs)


def test_python_objects_a_builder_pipeline_passes_are_not_subject_to_the_list():
    from dataflow import col

    flow = Flow("objects")
    words = flow.source("words", value=str)
    words.map(lambda v: len(v)).sink(print)
    words.filter(col("_value") != "").print()
    assert check(flow.topology(), ImportPolicy(allowed=("mypkg",))) == []


def doc_blocks(path: Path, section: str) -> list[str]:
    """The ```text blocks of a section of a doc, each as the command and what it prints."""
    text = path.read_text().split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```text\n(.*?)^```", text, re.S | re.M)


def test_the_trust_section_of_the_language_doc_shows_real_output(monkeypatch, tmp_path):
    quotes, python, shell = doc_blocks(ROOT / "docs" / "language.md", "Trust: a `.flow` file is code")
    monkeypatch.chdir(ROOT)
    for block in (quotes, python):
        command, *shown = block.splitlines()
        result = invoke(*command.split()[2:])
        assert result.stderr + result.stdout == "\n".join(shown) + "\n"
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATAFLOW_ALLOWED_MODULES", raising=False)
    Path("sh.flow").write_text(SHELL_FLOW)
    command, *shown = shell.splitlines()
    result = invoke(*command.split()[2:])
    assert (result.exit_code, result.stderr) == (1, "\n".join(shown) + "\n")


def test_the_readme_trust_commands_do_what_their_comments_say(monkeypatch):
    readme = (ROOT / "README.md").read_text().split("## Trust: a `.flow` file is code\n", 1)[1]
    block = re.search(r"^```sh\n(.*?)^```", readme, re.S | re.M).group(1)
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("DATAFLOW_ALLOWED_MODULES", raising=False)
    results = []
    for line in block.splitlines():
        command, _, comment = line.partition("  #")
        words = command.split()
        env = dict(w.split("=", 1) for w in words if "=" in w and not w.startswith("-"))
        args = words[[i for i, w in enumerate(words) if w.endswith("/dataflow")][0] + 1:]
        results.append((invoke(*args, env=env or None), comment.strip()))
    (no_import, _), (no_import_plan, _), (allowed, _) = results
    assert no_import.exit_code == 0 and no_import.stderr.count(": note: ") == 2
    assert no_import_plan.exit_code == 0 and no_import_plan.stdout.startswith("Pipeline quotes:")
    assert (allowed.exit_code, allowed.stderr) == (0, "")
    # the console block after it shows the refusal's output (tests/docs checks it); its status:
    refused = invoke("check", "examples/quotes.flow", env={"DATAFLOW_ALLOWED_MODULES": "mypkg"})
    assert refused.exit_code == 1 and refused.stderr.count("may not be imported") == 2


RUN_REFUSED = ("error: DATAFLOW_NO_IMPORT is set, and this command runs the Python code the pipeline names; hint: "
               "unset it for a pipeline you trust, or use dataflow check/plan to look at one you do not\n")


def test_commands_that_run_the_code_refuse_when_the_environment_says_import_nothing(here):
    module = marker_module(here)
    Path("u.flow").write_text(UDF_FLOW.format(module=module))
    (here / "app_for_ask.py").write_text(f"from pathlib import Path\nPath({str(here / 'ran')!r}).write_text('ran')\n"
                                         "from dataflow.runtime.app import App\napp = App('for_ask')\n")
    Path("in.jsonl").write_text('"four"\n')
    for command in (["run", "u.flow", "--broker", "memory://", "-i", "words=in.jsonl", "--until-idle"],
                    ["query", "u.flow", "words"], ["ask", "u.flow", "words", "--value", '"x"'],
                    ["ask", "app_for_ask.py", "quote", "--value", "1"]):
        result = invoke(*command, env={"DATAFLOW_NO_IMPORT": "1"})
        assert (result.exit_code, result.stdout, result.stderr) == (1, "", RUN_REFUSED)
    assert not imported(here, module) and not (here / "ran").exists()


def test_the_policy_from_the_environment():
    assert ImportPolicy.from_environment({}) == ImportPolicy()
    assert ImportPolicy.from_environment({"DATAFLOW_NO_IMPORT": "true", "DATAFLOW_ALLOWED_MODULES": " a b,c "}) == \
        ImportPolicy(imports=False, allowed=("a", "b", "c"))
    assert ImportPolicy.from_environment({"DATAFLOW_NO_IMPORT": "0"}).imports
