"""The sandbox: verdicts, containment probes, HumanEval+ parity, other languages."""

from __future__ import annotations

import ast
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from codistill.evaluation import sandbox_worker
from codistill.evaluation.sandbox import (
    ExecResult,
    Job,
    Limits,
    Sandbox,
    SandboxError,
    benchmark_paths,
    classify,
    own_diagnostics,
    run_programs,
    worker_environment,
)
from codistill.evaluation.sandbox_probes import PROBE_NAMES, SECRET_VARIABLE, ProbeSite
from codistill.evaluation.sandbox_syscalls import seccomp_program
from codistill.evaluation.sandbox_worker import remove_tree

HUMANEVAL_PLUS = Path("/work/shared/data/humaneval-plus/HumanEvalPlus-v0.1.10.jsonl.gz")
# Small limits: a probe that escaped must still not hurt a machine shared with other tests.
FAST = Limits(timeout_s=2.0, cpu_s=3, memory_mb=512)


@pytest.fixture(scope="module")
def box():
    with Sandbox(FAST, workers=2) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def isolated(box):
    if not box.isolation["namespaces"]:
        pytest.skip("no user namespaces here: " + box.isolation.get("namespace_error", ""))
    return box


@pytest.fixture
def site():
    with ProbeSite() as probe_site:
        yield probe_site


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    if marker.encode() in fh.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found


def _needs(box: Sandbox, language: str) -> None:
    if not box.available(language):
        pytest.skip(f"no {language} toolchain on this machine")


# ---- Python verdicts --------------------------------------------------------------------------


def test_clean_exit_passes_with_its_stdout(box):
    result = box.run("print('hello')")
    assert (result.status, result.passed, result.returncode) == ("passed", True, 0)
    assert result.stdout == "hello\n"


def test_failed_assertion_is_failed_with_traceback(box):
    result = box.run("assert 1 + 1 == 3, 'arithmetic'")
    assert (result.status, result.detail) == ("failed", "AssertionError")
    assert "AssertionError: arithmetic" in result.stderr
    assert "sandbox_" not in result.stderr  # the traceback starts at the program


def test_other_exception_is_failed_with_its_type(box):
    result = box.run("len(5)")
    assert (result.status, result.detail) == ("failed", "TypeError")


def test_nonzero_exit_status_is_failed(box):
    result = box.run("import sys\nsys.exit(3)")
    assert (result.status, result.returncode) == ("failed", 3)


def test_death_by_signal_is_crashed(box):
    result = box.run("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)")
    assert (result.status, result.detail) == ("crashed", "SIGSEGV")


def test_stdin_reaches_the_program(box):
    assert box.run("print(input()[::-1])", stdin="abc\n").stdout == "cba\n"


def test_files_are_written_next_to_the_program(box):
    result = box.run("import helper\nprint(helper.VALUE)", files={"helper.py": "VALUE = 42\n"})
    assert result.stdout == "42\n"


def test_each_run_gets_a_fresh_directory(box):
    box.run("open('left-behind.txt', 'w').write('x')")
    assert box.run("import os\nprint(os.listdir('.'))").stdout == "['main.py']\n"


def test_run_many_keeps_the_jobs_order(box):
    jobs = [Job(f"import time\ntime.sleep({0.05 * (i % 3)})\nprint({i})") for i in range(8)]
    results = box.run_many(jobs, workers=2)
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(8)]


def test_run_many_runs_workers_in_parallel(box):
    jobs = [Job("import time\ntime.sleep(0.4)") for _ in range(4)]
    box.run_many(jobs[:2], workers=2)  # both workers started
    start = time.monotonic()
    assert all(r.passed for r in box.run_many(jobs, workers=2))
    assert time.monotonic() - start < 1.4  # one worker would need 1.6 s


def test_run_programs_runs_whole_programs_in_order():
    results = run_programs(["print(1)", "assert False"], timeout_s=2.0, workers=2)
    assert [r.status for r in results] == ["passed", "failed"]


def test_lost_worker_is_crashed_and_replaced():
    with Sandbox(FAST) as sandbox:
        sandbox.run("pass")
        worker = sandbox._pools[False].all[0]
        threading.Timer(0.3, worker.proc.kill).start()
        lost = sandbox.run("import time\ntime.sleep(1.5)")
        assert (lost.status, lost.detail[:19]) == ("crashed", "sandbox worker lost")
        assert sandbox.run("pass").passed


def test_closed_sandbox_refuses_to_run():
    sandbox = Sandbox(FAST)
    sandbox.close()
    with pytest.raises(SandboxError):
        sandbox.run("pass")


def test_limits_reject_a_bad_value_by_name():
    with pytest.raises(ValueError, match="max_processes"):
        Limits(max_processes=0)


def test_cpu_limit_signal_is_timed_out():
    step = {
        "returncode": None,
        "signal": 24,  # SIGXCPU
        "timed_out": False,
        "duration_s": 1.0,
        "cpu_s": 1.0,
        "tag": "",
        "stdout": "",
        "stderr": "",
        "stdout_capped": False,
        "stderr_capped": False,
    }
    result = classify([step], ["run"], Limits(cpu_s=1))
    assert isinstance(result, ExecResult)
    assert (result.status, result.detail) == ("timed_out", "CPU-time limit (1 s)")


# ---- probes: each contained, with the right verdict --------------------------------------------


def test_isolation_reports_every_mechanism_in_place(isolated):
    facts = isolated.isolation
    assert facts["network_isolated"] and facts["readonly_fs"]
    assert facts["pid_namespace"] and facts["nproc_enforced"]


def test_probe_network_socket_is_refused(isolated, site):
    result = isolated.run(site.probe("network socket").program)
    assert result.status == "failed"
    assert site.connections == 0


def test_network_limit_off_keeps_the_host_network(isolated, site):
    result = isolated.run(site.probe("network socket").program, limits=Limits(network=True))
    assert result.passed and site.connections == 1


def test_probe_write_outside_temp_dir_is_refused(isolated, site):
    result = isolated.run(site.probe("write outside temp dir").program)
    assert result.status == "failed"
    # Read-only where the bait is visible; absent where it sits in a directory the sandbox
    # masks (a home under /tmp): contained either way.
    assert "Read-only file system" in result.stderr or "No such file" in result.stderr
    assert not site.host_saw("write outside temp dir")


# ---- issue 13: secrets, host sockets, IPC, memory as a whole, honest verdicts ------------------


@pytest.fixture(scope="module")
def probe_site():
    with ProbeSite() as probe_site:  # puts a fake API key into this process's environment
        yield probe_site


@pytest.fixture(scope="module")
def probe_box(probe_site):
    # Started after the site: its workers would inherit the caller's fake key if they could.
    with Sandbox(FAST, workers=1) as sandbox:
        if not sandbox.isolation["namespaces"]:
            pytest.skip("no user namespaces here")
        yield sandbox


@pytest.mark.parametrize("name", PROBE_NAMES)
def test_every_probe_is_contained(probe_box, probe_site, name):
    try:
        probe = probe_site.probe(name)
    except LookupError as exc:
        pytest.skip(str(exc))
    if not probe_box.available(probe.language):
        pytest.skip(f"no {probe.language} toolchain")
    result = probe_box.run(probe.program, probe.language)
    try:
        assert not probe_site.escaped(probe, result.status, result.stdout + result.stderr), (
            result.status,
            result.detail,
            result.stderr[-500:],
        )
    finally:
        probe_site.reset()
    assert probe_box.run("print('still running')").stdout == "still running\n"


def test_worker_environment_keeps_only_what_runtimes_need():
    env = worker_environment({"PATH": "/usr/bin", "OPENAI_API_KEY": "sk-1", "HF_TOKEN": "h"})
    assert env == {"PATH": "/usr/bin"}


def test_caller_secrets_are_not_in_any_environment_a_sample_can_read(probe_box, probe_site):
    assert os.environ[SECRET_VARIABLE].endswith(probe_site.token)
    program = (
        "import os\n"
        "seen = []\n"
        "for p in ('self', '1'):\n"
        "    try:\n"
        "        seen.append(open(f'/proc/{p}/environ', 'rb').read())\n"
        "    except OSError:\n"
        "        pass\n"
        "print(any(b'CODISTILL_PROBE' in s for s in seen), 'CODISTILL_PROBE_API_KEY' in os.environ)"
    )
    assert probe_box.run(program).stdout == "False False\n"
    assert SECRET_VARIABLE not in probe_box.isolation["environment"]


def test_host_tmp_is_replaced_by_a_private_one(isolated, tmp_path_factory):
    host_file = Path(tempfile.mkstemp(prefix="codistill-host-")[1])
    try:
        program = f"import os\nprint(os.path.exists({str(host_file)!r}), os.listdir('/dev/shm'))"
        assert isolated.run(program).stdout == "False []\n"
    finally:
        host_file.unlink()


def test_unix_sockets_are_refused_even_where_the_path_is_visible(isolated, probe_site):
    program = (
        "import socket\n"
        "try:\n    socket.socket(socket.AF_UNIX)\nexcept PermissionError:\n    print('refused')\n"
        "a, b = socket.socketpair()\nprint('socketpair ok')\n"
    )
    assert isolated.run(program).stdout == "refused\nsocketpair ok\n"
    assert isolated.isolation["unix_sockets_blocked"]


def test_sysv_shared_memory_dies_with_its_sample(isolated):
    make = (
        "import ctypes\nlibc = ctypes.CDLL(None)\n"
        "libc.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]\n"
        "print(libc.shmget(0x5B0C0DE, 1 << 20, 0o1600) >= 0)\n"
    )
    look = "print(open('/proc/sysvipc/shm').read().count('\\n'))"
    assert isolated.run(make).stdout == "True\n"  # within the memory limit: allowed
    assert isolated.run(look).stdout == "1\n"  # the header only: the segment died with it
    with open("/proc/sysvipc/shm") as fh:
        assert str(0x5B0C0DE) not in fh.read()


def test_sysv_shared_memory_counts_against_the_memory_limit(isolated):
    program = (
        "import ctypes\nlibc = ctypes.CDLL(None)\n"
        "libc.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]\n"
        "print([libc.shmget(0x5B0C0E0 + i, 200 << 20, 0o1600) >= 0 for i in range(3)])\n"
    )
    result = isolated.run(program, limits=Limits(memory_mb=256))
    assert result.stdout == "[True, False, False]\n"


def test_java_sample_cannot_start_processes_but_runs_threads(isolated):
    _needs(isolated, "java")
    program = """public class Main {
    public static void main(String[] a) throws Exception {
        Thread t = new Thread(() -> System.out.println("thread"));
        t.start();
        t.join();
        try {
            new ProcessBuilder("true").start().waitFor();
            System.out.println("child started");
        } catch (java.io.IOException e) {
            System.out.println("refused");
        }
    }
}"""
    result = isolated.run(program, "java")
    assert (result.status, result.stdout) == ("passed", "thread\nrefused\n")


def test_processes_are_allowed_when_limits_allow_them(isolated):
    result = isolated.run(
        "import subprocess\nsubprocess.run(['true'], check=True)", limits=Limits(max_processes=4)
    )
    assert result.passed


def test_forged_status_tag_fails_only_its_own_sample(isolated, site):
    result = isolated.run(site.probe("forged status tag").program)
    assert (result.status, result.detail) == ("failed", "exit status 1")
    assert isolated.run("pass").passed


def test_deep_directory_tree_is_cleaned_up_and_the_run_goes_on(isolated):
    program = "import os\nfor _ in range(1500):\n    os.mkdir('d')\n    os.chdir('d')\n"
    results = isolated.run_many([Job(program), Job("import os\nprint(os.listdir('.'))")])
    assert [r.status for r in results] == ["passed", "passed"]
    assert results[1].stdout == "['main.py']\n"


def test_remove_tree_deletes_deep_and_locked_trees_without_recursion(tmp_path, monkeypatch):
    top = tmp_path / "top"
    top.mkdir()
    monkeypatch.chdir(top)
    for _ in range(1500):  # deeper than the recursion limit and than PATH_MAX
        os.mkdir("d")
        os.chdir("d")
    Path("f").write_text("x")
    os.chdir(top)
    os.chmod("d", 0o500)  # a sample may take its own write permission away
    monkeypatch.chdir(tmp_path)
    assert remove_tree(str(top)) == 0
    assert not top.exists()
    assert Path.cwd() == tmp_path


def test_worker_failure_is_a_crashed_sample_not_an_exception():
    with Sandbox(FAST) as sandbox:
        sandbox.run("pass")
        step = {"returncode": 126, "signal": None, "timed_out": False, "duration_s": 0.0}
        step.update(cpu_s=0.0, tag="setup-failed", stdout="", stderr="boom")
        step.update(stdout_capped=False, stderr_capped=False)
        assert classify([step], ["run"], FAST).status == "crashed"
        worker = sandbox._pools[False].all[0]
        real = worker.request
        worker.request = lambda payload, timeout: {"error": "Traceback ... RecursionError"}
        result = sandbox.run("pass")
        assert (result.status, result.detail) == ("crashed", "sandbox could not run the sample")
        del real
        assert sandbox.run("print(2)").stdout == "2\n"  # a fresh worker took over


@pytest.mark.parametrize(
    ("program", "detail"),
    [
        ("import sys\nsys.exit(0)\nassert False", "exit:0"),
        ("import os\nos._exit(0)", "os._exit"),
        ("import atexit, os\natexit.register(os._exit, 0)\nassert False", "AssertionError"),
        ("raise SystemExit(0)", "exit:0"),
    ],
)
def test_python_passes_only_by_reaching_its_end(box, program, detail):
    result = box.run(program)
    assert (result.status, result.returncode) == ("failed", 0)
    assert detail in result.detail


def test_a_program_that_reaches_its_end_passes_even_with_exit_handlers(box):
    result = box.run("import atexit\natexit.register(print, 'bye')\nprint('end')")
    assert (result.status, result.stdout) == ("passed", "end\nbye\n")


def test_benchmark_files_are_hidden_from_samples(site):
    # Not under /tmp: samples see a private /tmp anyway.
    answers = Path(site.outside) / "answers.jsonl"
    answers.write_text('{"canonical_solution": "return 42"}\n')
    with Sandbox(FAST, hide=[answers]) as sandbox:
        if not sandbox.isolation["namespaces"]:
            pytest.skip("no user namespaces here")
        hidden = sandbox.isolation["hidden"]
        # Paths under /tmp need no hiding: samples get a private /tmp (a venv there, say).
        outside_tmp = {p for p in [*benchmark_paths(), str(answers)] if not p.startswith("/tmp/")}
        assert outside_tmp <= set(hidden)
        # Hidden: read as empty; under the private /tmp: not there at all.
        program = f"print(repr(open({str(answers)!r}).read()))"
        assert sandbox.run(program).stdout in ("''\n", "")
        for path in benchmark_paths():
            listed = sandbox.run(f"import os\nprint(os.listdir({path!r}))").stdout
            assert listed in ("[]\n", "")


def test_compiler_diagnostics_keep_only_the_samples_own_lines(isolated, site):
    _needs(isolated, "c")
    leak = isolated.run(site.probe("compiler output leak").program, "c")
    assert leak.status == "failed" and site.token not in leak.stdout + leak.stderr
    own = isolated.run("int main(void) { return undefined_name; }", "c")
    assert "main.c:1:" in own.stderr and "undefined_name" in own.stderr


def test_own_diagnostics_drop_included_files_and_their_quoted_lines():
    text = (
        "In file included from main.c:1:\n"
        "/home/u/.netrc:1:1: error: unknown type name 'machine'\n"
        "    1 | machine api.example.com password hunter2\n"
        "      | ^~~~~~~\n"
        "main.c:3:5: error: expected ';'\n"
        "    3 |   x = 1\n"
        "1 error\n"
    )
    kept = own_diagnostics(text, ["main.c"])
    assert "hunter2" not in kept and ".netrc" not in kept
    assert kept == "main.c:3:5: error: expected ';'\n    3 |   x = 1\n1 error\n"


def test_seccomp_filter_exists_for_known_architectures_only():
    assert seccomp_program(True, True, "x86_64") and seccomp_program(True, False, "aarch64")
    assert seccomp_program(True, True, "riscv64") == []


WORKER_FILES = ("worker", "namespaces", "sample", "syscalls", "protocol")


def test_worker_files_import_only_the_stdlib_and_each_other():
    here = Path(sandbox_worker.__file__).parent
    allowed = {f"codistill.evaluation.sandbox_{name}" for name in WORKER_FILES}
    foreign = set()
    for name in WORKER_FILES:
        tree = ast.parse((here / f"sandbox_{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                targets = [node.module or ""] if node.level == 0 else ["(relative)"]
            else:
                continue
            for target in targets:
                top = target.split(".")[0]
                if target not in allowed and top not in sys.stdlib_module_names | {"__future__"}:
                    foreign.add((name, target))
    assert not foreign, f"the worker must stay stdlib-only: {sorted(foreign)}"


def test_worker_script_loads_its_helpers_from_its_own_folder(tmp_path):
    # A copy whose package __init__ files would abort: the script must run without them, and
    # its helpers must come from beside it, never from the installed codistill.
    folder = tmp_path / "codistill" / "evaluation"
    folder.mkdir(parents=True)
    here = Path(sandbox_worker.__file__).parent
    for name in WORKER_FILES:
        shutil.copy(here / f"sandbox_{name}.py", folder)
    for init in (folder / "__init__.py", folder.parent / "__init__.py"):
        init.write_text("raise SystemExit('an __init__ ran in the worker')\n")
    with open(folder / "sandbox_protocol.py", "a") as fh:
        fh.write("\nimport sys\nprint('protocol from', __file__, file=sys.stderr)\n")
    done = subprocess.run(
        [sys.executable, "-I", str(folder / "sandbox_worker.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: sandbox_worker.py")
    assert f"protocol from {folder / 'sandbox_protocol.py'}" in done.stderr


def test_probe_fork_bomb_is_contained(isolated):
    # Never run this bomb where the process limit is not enforced: it would be a real one.
    assert isolated.isolation["nproc_enforced"]
    bomb = (
        "import os\n"
        "while True:\n"
        "    try:\n"
        "        if os.fork() == 0:\n"
        "            print('forked', flush=True)\n"
        "    except OSError:\n"
        "        pass\n"
    )
    start = time.monotonic()
    result = isolated.run(bomb, limits=Limits(timeout_s=1.0, cpu_s=2, max_processes=4))
    assert result.status == "timed_out"
    assert result.stdout.count("forked") <= 3  # 4 processes, the first one included
    assert time.monotonic() - start < 15


def test_probe_fork_is_refused_at_the_default_process_limit(isolated, site):
    result = isolated.run(site.probe("fork bomb").program)
    assert (result.status, result.detail) == ("failed", "BlockingIOError")


def test_probe_allocate_4gib_is_memory_exceeded(isolated, site):
    start = time.monotonic()
    result = isolated.run(site.probe("allocate 4 GiB").program)
    assert result.status == "memory_exceeded"
    assert time.monotonic() - start < 5  # refused by RLIMIT_AS, not paged in


def test_probe_infinite_loop_is_timed_out(isolated, site):
    result = isolated.run(site.probe("infinite loop").program, limits=Limits(timeout_s=0.5))
    assert (result.status, result.detail) == ("timed_out", "wall-clock limit (0.5 s)")


def test_probe_100mb_of_output_is_capped(isolated, site):
    result = isolated.run(site.probe("100 MB of output").program)
    assert (result.status, result.detail) == (
        "failed",
        f"output limit ({FAST.max_output_bytes} bytes)",
    )
    assert len(result.stdout) == FAST.max_output_bytes


def test_probe_spawn_a_subprocess_is_refused(isolated, site):
    result = isolated.run(site.probe("spawn a subprocess").program)
    assert (result.status, result.detail) == ("failed", "BlockingIOError")


def test_probe_exhaust_file_descriptors_is_refused(isolated, site):
    result = isolated.run(site.probe("exhaust file descriptors").program)
    assert result.status == "failed"
    assert "Too many open files" in result.stderr


def test_no_process_outlives_its_sample(isolated):
    marker = f"{os.getpid()}.271828"
    program = (
        "import subprocess\n"
        f"subprocess.Popen(['sleep', '{marker}'], start_new_session=True)\n"
        "print('spawned')\n"
    )
    result = isolated.run(program, limits=Limits(timeout_s=2.0, max_processes=4))
    assert result.stdout == "spawned\n"
    time.sleep(0.1)
    assert _processes_with(marker) == []


def test_timeout_kills_everything_the_sample_started(isolated):
    marker = f"{os.getpid()}.314159"
    program = (
        "import subprocess\n"
        f"subprocess.Popen(['sleep', '{marker}'], start_new_session=True)\n"
        "while True:\n    pass\n"
    )
    result = isolated.run(program, limits=Limits(timeout_s=0.5, max_processes=4))
    assert result.status == "timed_out"
    time.sleep(0.1)
    assert _processes_with(marker) == []


def test_rlimits_mode_owns_up_to_what_it_does_not_contain():
    with Sandbox(FAST, isolation="rlimits") as sandbox:
        facts = sandbox.isolation
        assert not facts["namespaces"]
        assert not facts["network_isolated"] and not facts["readonly_fs"]
        assert sandbox.run("x = bytes(4 << 30)").status == "memory_exceeded"


# ---- HumanEval+ --------------------------------------------------------------------------------


def _humaneval_plus() -> list[dict]:
    if not HUMANEVAL_PLUS.is_file():
        pytest.skip(f"{HUMANEVAL_PLUS} not present")
    with gzip.open(HUMANEVAL_PLUS, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _program(task: dict, completion: str) -> str:
    return f"{task['prompt']}{completion}\n{task['test']}\ncheck({task['entry_point']})\n"


def test_humaneval_plus_canonical_solutions_all_pass(box):
    tasks = _humaneval_plus()
    results = box.run_many([Job(_program(t, t["canonical_solution"])) for t in tasks], workers=2)
    failing = [(t["task_id"], r.status, r.detail) for t, r in zip(tasks, results, strict=True)]
    assert [f for f, r in zip(failing, results, strict=True) if not r.passed] == []


def test_humaneval_plus_broken_solutions_all_fail(box):
    tasks = _humaneval_plus()
    results = box.run_many([Job(_program(t, "    return None\n")) for t in tasks], workers=2)
    passing = [t["task_id"] for t, r in zip(tasks, results, strict=True) if r.passed]
    assert passing == []
    assert {r.status for r in results} == {"failed"}


# ---- other languages ----------------------------------------------------------------------------

JAVA_MAIN = (
    'public class Main { public static void main(String[] a) { System.out.println("hi"); } }'
)
CALC = "public class Calc { static int add(int a, int b) { return a + b; } }"
JUNIT4_TEST = """import org.junit.Test;
import static org.junit.Assert.assertEquals;
public class CalcTest {
    @Test public void adds() { assertEquals(4, Calc.add(2, 2)); }
    @Test public void wrong() { assertEquals(5, Calc.add(2, 2)); }
}
"""
JUNIT5_TEST = """import org.junit.jupiter.api.Test;
import static org.junit.jupiter.api.Assertions.assertEquals;
class CalcTest { @Test void adds() { assertEquals(4, Calc.add(2, 2)); } }
"""


def test_java_main_program_passes(box):
    _needs(box, "java")
    result = box.run(JAVA_MAIN, "java")
    assert (result.status, result.stdout) == ("passed", "hi\n")


def test_java_compile_error_is_failed_with_detail(box):
    _needs(box, "java")
    result = box.run('public class Main { void f() { int x = "s"; } }', "java")
    assert (result.status, result.detail) == ("failed", "compile error")
    assert "incompatible types" in result.stderr


def test_junit4_failing_test_is_failed(box):
    _needs(box, "java")
    result = box.run(JUNIT4_TEST, "java", files={"Calc.java": CALC})
    if result.status == "unavailable":
        pytest.skip(result.detail)
    assert result.status == "failed"
    assert "expected:<5> but was:<4>" in result.stdout


def test_junit5_passing_test_passes(box):
    _needs(box, "java")
    # The JVM plus the JUnit platform need ~1-2 s on a loaded 2-core machine.
    slow = Limits(timeout_s=15.0, cpu_s=15, memory_mb=512)
    result = box.run(JUNIT5_TEST, "java", files={"Calc.java": CALC}, limits=slow)
    if result.status == "unavailable":
        pytest.skip(result.detail)
    assert result.status == "passed"
    assert "1 tests successful" in result.stdout


def test_javascript_uncaught_error_is_failed(box):
    _needs(box, "javascript")
    result = box.run("console.log('x'); throw new Error('boom')", "javascript")
    assert (result.status, result.stdout) == ("failed", "x\n")
    assert "boom" in result.stderr


def test_c_program_passes(box):
    _needs(box, "c")
    result = box.run('#include <stdio.h>\nint main(void) { puts("c"); return 0; }', "c")
    assert (result.status, result.stdout) == ("passed", "c\n")


def test_cpp_bad_alloc_is_memory_exceeded(box):
    _needs(box, "cpp")
    program = "#include <vector>\nint main() { std::vector<char> v(8000000000ULL); return v[1]; }"
    assert box.run(program, "cpp").status == "memory_exceeded"


def test_missing_toolchain_is_unavailable_not_failed(tmp_path):
    with Sandbox(FAST, toolchain_path=str(tmp_path)) as sandbox:
        assert not sandbox.available("java")
        result = sandbox.run(JAVA_MAIN, "java")
    assert (result.status, result.passed) == ("unavailable", False)
    assert "javac" in result.detail


def test_missing_junit_is_unavailable(tmp_path, box):
    _needs(box, "java")
    with Sandbox(FAST, maven_repo=tmp_path) as sandbox:
        result = sandbox.run(JUNIT4_TEST, "java", files={"Calc.java": CALC})
    assert result.status == "unavailable"
