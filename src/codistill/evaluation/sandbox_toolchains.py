"""The toolchains the sandbox runs programs with: compilers, runtimes and JUnit jars.

:class:`Toolchains` finds ``javac``, ``java``, ``node``, ``gcc`` and ``g++`` on a PATH, the
newest JUnit 4 (with Hamcrest) or complete JUnit 5 in the local Maven cache, and compiles the
small JUnit 5 launcher once (trusted code, on the host). A missing tool makes a run
``unavailable``, never a failed sample.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

_JUNIT5_RUNNER = """\
import java.io.PrintWriter;
import org.junit.platform.launcher.Launcher;
import org.junit.platform.launcher.core.LauncherDiscoveryRequestBuilder;
import org.junit.platform.launcher.core.LauncherFactory;
import org.junit.platform.launcher.listeners.SummaryGeneratingListener;
import org.junit.platform.launcher.listeners.TestExecutionSummary;
import static org.junit.platform.engine.discovery.DiscoverySelectors.selectClass;

public final class CodistillJUnit5Runner {
    public static void main(String[] args) {
        LauncherDiscoveryRequestBuilder request = LauncherDiscoveryRequestBuilder.request();
        for (String name : args) request.selectors(selectClass(name));
        SummaryGeneratingListener listener = new SummaryGeneratingListener();
        Launcher launcher = LauncherFactory.create();
        launcher.execute(request.build(), listener);
        TestExecutionSummary summary = listener.getSummary();
        PrintWriter out = new PrintWriter(System.out);
        summary.printTo(out);
        summary.printFailuresTo(out, 25);
        out.flush();
        boolean ok = summary.getTestsFoundCount() > 0 && summary.getTotalFailureCount() == 0;
        System.exit(ok ? 0 : 1);
    }
}
"""


@dataclass
class Toolchains:
    """The tools and jars found so far (looked up once each; safe to share between threads)."""

    path: str | None  # PATH to search; None: $PATH
    maven_repo: Path
    runner_dir: Path  # where the JUnit 5 launcher class is compiled, once
    found: dict[str, str | None] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    runner: str | None = None  # "" once compiling it failed

    def which(self, name: str) -> str | None:
        if name not in self.found:
            hit = shutil.which(name, path=self.path)
            self.found[name] = hit
        return self.found[name]

    def missing(self, language: str) -> list[str]:
        needs = {
            "python": [],
            "java": ["javac", "java"],
            "javascript": ["node"],
            "c": ["gcc"],
            "cpp": ["g++"],
        }[language]
        return [tool for tool in needs if self.which(tool) is None]

    def junit4(self) -> list[str] | None:
        """JUnit 4 and the Hamcrest it needs, newest versions in the Maven cache."""
        junit = _newest(self.maven_repo / "junit/junit", "junit-{v}.jar", major="4")
        hamcrest = _newest(self.maven_repo / "org/hamcrest/hamcrest-core", "hamcrest-core-{v}.jar")
        hamcrest = hamcrest or _newest(
            self.maven_repo / "org/hamcrest/hamcrest", "hamcrest-{v}.jar"
        )
        return [junit, hamcrest] if junit and hamcrest else None

    def junit5(self) -> list[str] | None:
        """The newest JUnit Jupiter whose matching platform jars are all in the Maven cache."""
        jupiter_dir = self.maven_repo / "org/junit/jupiter/junit-jupiter-engine"
        for version in _versions(jupiter_dir):
            platform = "1" + version[1:] if version.startswith("5.") else version
            jars = [
                self.maven_repo / f"org/junit/jupiter/{a}/{version}/{a}-{version}.jar"
                for a in ("junit-jupiter-api", "junit-jupiter-engine")
            ] + [
                self.maven_repo / f"org/junit/platform/{a}/{platform}/{a}-{platform}.jar"
                for a in (
                    "junit-platform-commons",
                    "junit-platform-engine",
                    "junit-platform-launcher",
                )
            ]
            extras = [
                _newest(self.maven_repo / "org/opentest4j/opentest4j", "opentest4j-{v}.jar"),
                _newest(
                    self.maven_repo / "org/apiguardian/apiguardian-api", "apiguardian-api-{v}.jar"
                ),
            ]
            if all(j.is_file() for j in jars) and all(extras):
                return [str(j) for j in jars] + [e for e in extras if e]
        return None

    def junit5_runner(self, jars: list[str]) -> str | None:
        """Directory of the compiled JUnit 5 launcher (trusted code, compiled on the host)."""
        with self.lock:
            if self.runner is None:
                self.runner_dir.mkdir(parents=True, exist_ok=True)
                source = self.runner_dir / "CodistillJUnit5Runner.java"
                source.write_text(_JUNIT5_RUNNER)
                argv = [self.which("javac"), "-nowarn", "-d", str(self.runner_dir)]
                argv += ["-cp", os.pathsep.join(jars), str(source)]
                done = subprocess.run(argv, capture_output=True, timeout=120)
                self.runner = str(self.runner_dir) if done.returncode == 0 else ""
            return self.runner or None


def _version_key(version: str) -> tuple:
    return tuple(int(p) if p.isdigit() else -1 for p in re.split(r"[.-]", version))


def _versions(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted((p.name for p in directory.iterdir() if p.is_dir()), key=_version_key)[::-1]


def _newest(directory: Path, pattern: str, major: str | None = None) -> str | None:
    for version in _versions(directory):
        if major is None or version.split(".")[0] == major:
            jar = directory / version / pattern.format(v=version)
            if jar.is_file():
                return str(jar)
    return None
