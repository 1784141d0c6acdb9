"""Compile and run fixture programs with their variants: one compiler and one process per
language, each program's output under an ``@@key`` line (C: gcc, Java: javac + java).

Every program defines ``fn``; it is called on each of ``inputs`` and each result printed
(Java prints a RuntimeException's class name instead, so a variant that throws differently shows).
"""

from __future__ import annotations

import re
import subprocess

import pytest


def execute(command: list[str]) -> str:
    """stdout of a compiled fixture program; a variant that loops forever fails the tests."""
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{command[-1]} timed out: some variant does not terminate")
    return run.stdout


def split_output(stdout: str) -> dict[str, str]:
    outputs: dict[str, str] = {}
    key = None
    for line in stdout.splitlines():
        if line.startswith("@@"):
            key = line[2:]
            outputs[key] = ""
        else:
            outputs[key] += line + "\n"
    return outputs


def run_c(programs: dict[str, str], inputs, tmp_path) -> dict[str, str]:
    parts, calls = ["#include <stdio.h>"], []
    for i, (key, code) in enumerate(programs.items()):
        name = f"fn_{i}"
        parts.append(re.sub(r"\bfn\b", name, code).replace("long fn_", "static long fn_", 1))
        prints = " ".join(f'printf("%ld\\n", (long){name}({x}));' for x in inputs)
        calls.append(f'printf("@@{key}\\n"); {prints}')
    parts.append("int main(void) {\n" + "\n".join(calls) + "\nreturn 0;\n}\n")
    source = tmp_path / "all.c"
    source.write_text("\n".join(parts))
    subprocess.run(
        ["gcc", "-w", "-O0", "-o", str(tmp_path / "all"), str(source)],
        check=True,
        capture_output=True,
    )
    return split_output(execute([str(tmp_path / "all")]))


def run_java(programs: dict[str, str], inputs, tmp_path) -> dict[str, str]:
    parts, calls = [], []
    for i, (key, code) in enumerate(programs.items()):
        parts.append(f"class K{i} {{\n{code}\n}}")
        calls.append(f'System.out.println("@@{key}");')
        for x in inputs:
            calls.append(
                f"try {{ System.out.println(K{i}.fn({x})); }} catch (RuntimeException e) "
                "{ System.out.println(e.getClass().getName()); }"
            )
    main = "public class Main {\npublic static void main(String[] args) {\n"
    parts.append(main + "\n".join(calls) + "\n}\n}\n")
    (tmp_path / "Main.java").write_text("\n".join(parts))
    compiled = subprocess.run(
        ["javac", "-nowarn", "-d", str(tmp_path), str(tmp_path / "Main.java")],
        capture_output=True,
        text=True,
    )
    assert compiled.returncode == 0, compiled.stderr
    return split_output(execute(["java", "-XX:TieredStopAtLevel=1", "-cp", str(tmp_path), "Main"]))
