"""The processes under test: the fake upstream, Tokenomy and LiteLLM.

Each runs in its own session (so its whole process group can be stopped), logs to
a file in the run's temporary directory, and may be pinned to a set of cores.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from . import BENCH, HOST, LITELLM, MODEL, PRICE_IN, PRICE_OUT, REPO, TOKENOMY, TOKENOMY_CAPS

LITELLM_VENV = BENCH / ".venv-litellm"
LITELLM_REQS = BENCH / "requirements-litellm.txt"
Probe = tuple[str, str, bytes | None, dict[str, str]]  # method, path, body, headers


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def probe(port: int, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> bool:
    conn = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        conn.request(method, path, body=body, headers=headers)
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


@dataclass
class Service:
    name: str
    argv: list[str]
    env: dict[str, str]
    port: int
    health: Probe  # answered 200 means up
    log: Path
    cpus: set[int] | None
    proc: subprocess.Popen[bytes] | None = None
    startup_s: list[float] = field(default_factory=list)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 120.0, record: bool = True) -> float:
        """Start the process; return the seconds from spawn to the first healthy answer."""
        cpus = self.cpus

        def pin() -> None:
            if cpus:
                os.sched_setaffinity(0, cpus)

        with self.log.open("ab") as log:
            began = time.perf_counter()
            self.proc = subprocess.Popen(
                self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=pin,
            )  # fmt: skip
        while time.perf_counter() - began < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}"
                )
            if probe(self.port, *self.health):
                took = time.perf_counter() - began
                if record:
                    self.startup_s.append(took)
                return took
            time.sleep(0.005)
        raise RuntimeError(f"{self.name} not healthy after {timeout:.0f} s:\n{self.tail()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(wait)
                return

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def child_env(extra: dict[str, str], tokenomy: bool) -> dict[str, str]:
    drop = ("DATABASE_URL", "PYTHONSTARTUP", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["NO_PROXY"] = env["no_proxy"] = f"{HOST},localhost"
    if tokenomy:
        # Bytecode as an installed package would have it, kept out of the source tree.
        env["PYTHONPYCACHEPREFIX"] = str(BENCH / "__pycache__" / "prefix")
        if importlib.util.find_spec("tokenomy") is None:  # not installed: run from src/
            src = str(REPO / "src")
            env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def ensure_litellm() -> str:
    """Create benchmarks/.venv-litellm with the pinned LiteLLM; return its version."""
    pinned = LITELLM_REQS.read_text().split("==", 1)[1].strip()
    python = LITELLM_VENV / "bin" / "python"
    query = [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"]
    if python.exists():
        found = subprocess.run(query, capture_output=True, text=True, check=False).stdout.strip()
        if found == pinned:
            return found
    print(f"installing LiteLLM {pinned} into {LITELLM_VENV.relative_to(REPO)} (once) ...")
    subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-r", str(LITELLM_REQS)], check=True,
        timeout=1800,
    )  # fmt: skip
    return subprocess.run(query, capture_output=True, text=True, check=True).stdout.strip()


def tokenomy_argv(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("tokenomy")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-c", "from tokenomy.cli import main; main()", *args]


def chat_probe(key: str) -> Probe:
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    return ("POST", "/v1/chat/completions", body.encode(), headers)


def make_upstream(tmp: Path, chunks: int, cpus: set[int] | None) -> Service:
    port = free_port()
    argv = [sys.executable, "-m", "tokenomy.testing.fake_upstream", "--host", HOST]
    argv += ["--port", str(port), "--chunks", str(chunks)]
    return Service(
        "fake upstream",
        argv,
        child_env({}, True),
        port,
        chat_probe("x"),
        tmp / "upstream.log",
        cpus,
    )


def make_tokenomy(
    tmp: Path,
    upstream: int,
    cpus: set[int] | None,
    caps_redis: str | None = None,
    caps_allowance: int | None = None,
) -> tuple[Service, str]:
    """Tokenomy on a fresh SQLite ledger; with ``caps_redis``, also a team budget and a
    per-key rate limit whose counters live in that Redis (both far from their limits),
    with ``caps.allowance`` set to ``caps_allowance`` if given."""
    name = TOKENOMY_CAPS if caps_redis else TOKENOMY
    db = tmp / name / "ledger.db"
    db.parent.mkdir()
    config = tmp / name / "config.yaml"
    redis = f"redis_url: {caps_redis}\ncaps:\n  redis_prefix: 'bench-{secrets.token_hex(4)}:'\n"
    if caps_allowance is not None:
        redis += f"  allowance: {caps_allowance}\n"
    config.write_text(
        "server:\n  log_level: warning\nmodels:\n"
        f"  - name: {MODEL}\n    provider: openai\n    base_url: http://{HOST}:{upstream}/v1\n"
        f"    api_key: x\n    price: {{input: {PRICE_IN}, output: {PRICE_OUT}}}\n"
        + (redis if caps_redis else "")
    )
    master = "tk-bench-" + secrets.token_hex(16)
    env = child_env({"TOKENOMY_MASTER_KEY": master}, True)
    made = subprocess.run(
        tokenomy_argv("keys", "create", "--db", str(db), "--team", "bench"),
        env=env, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    lines = made.stdout.strip().splitlines()
    if made.returncode == 0 and lines:
        key = lines[-1].strip()
    else:
        print(f"note: `tokenomy keys create` failed ({made.stderr.strip()[-200:]}); "
              "using the master key as the client key")  # fmt: skip
        key = master
    if caps_redis:
        for cmd in (("budgets", "create", "bench-daily", "--team", "bench", "--usd", "1000000",
                     "--period", "daily"),
                    ("limits", "create", "bench-key", "--key", "each", "--rpm", "10000000",
                     "--tpm", "1000000000")):  # fmt: skip
            subprocess.run(tokenomy_argv(*cmd, "--config", str(config), "--db", str(db)),
                           env=env, capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    port = free_port()
    argv = tokenomy_argv("serve", "--config", str(config), "--db", str(db))
    argv += ["--host", HOST, "--port", str(port)]
    health: Probe = ("GET", "/healthz", None, {})
    return Service(name, argv, env, port, health, tmp / f"{name}.log", cpus), key


def make_litellm(tmp: Path, upstream: int, cpus: set[int] | None) -> tuple[Service, str]:
    key = "sk-bench-" + secrets.token_hex(16)
    config = tmp / "litellm.yaml"
    per_token_in = f"{Decimal(PRICE_IN) / 1_000_000:f}"  # plain decimals: YAML reads 6e-07 as text
    per_token_out = f"{Decimal(PRICE_OUT) / 1_000_000:f}"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n    litellm_params:\n      model: openai/{MODEL}\n"
        f"      api_base: http://{HOST}:{upstream}/v1\n      api_key: x\n"
        f"    model_info:\n      input_cost_per_token: {per_token_in}\n"
        f"      output_cost_per_token: {per_token_out}\n"
        f"general_settings:\n  master_key: {key}\n"
        "litellm_settings:\n  telemetry: false\n"
    )
    # No network at start-up (the bundled cost map), no per-request info logging.
    env = child_env({"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}, False)
    port = free_port()
    argv = [str(LITELLM_VENV / "bin" / "litellm"), "--config", str(config)]
    argv += ["--host", HOST, "--port", str(port)]
    health: Probe = ("GET", "/health/liveliness", None, {})
    return Service(LITELLM, argv, env, port, health, tmp / "litellm.log", cpus), key
