#!/usr/bin/env python3
"""The soak and kill drill of `scripts/soak-provision` (issue 15, section 4). Standard library only.

For one registry backend: N fresh virtual ESP32s (`espforge device create`), in batches, each
served on loopback (`espforge device serve`, a share of them with seeded transport faults), are
provisioned by `espforge provision` over socket://; the provisioning process is SIGKILLed at
random moments and run again with `--resume` until every device of the batch is done or stopped
failing differently. At the end `espforge soak-audit` compares every chip with the plan and the
registry, accounts for the identity pool and searches the work folder (logs, registry file and
export, line files, device folders except the chips' own flash.bin/efuse.bin) for the devices'
key bytes. Prints the figures; writes them as JSON to WORK/figures.json.
"""
import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time


def log(msg):
    print(msg, flush=True)


class Drill:
    def __init__(self, a):
        self.a = a
        self.bin = a.bin
        self.work = os.path.abspath(a.work)
        self.rng = random.Random(a.seed)
        self.kills = 0
        self.attempts = 0
        self.hangs = 0
        self.batch_seconds = []
        self.run_seconds = []
        self.unfinished_batches = []
        self.servers = []
        self.faulty_devices = 0

    def run(self, *args, **kw):
        return subprocess.run([self.bin, *args], check=True, capture_output=True, text=True, **kw)

    # --- the line -------------------------------------------------------------------------
    def make_line(self):
        line = os.path.join(self.work, "line")
        self.run("demo", "--chip", self.a.chip, "--devices", "1", "--dir", line)
        # The demo provisioned one in-process device into its own registry: not part of the drill.
        shutil.rmtree(os.path.join(line, "devices"), ignore_errors=True)
        for name in os.listdir(line):
            if name.startswith("registry.sqlite"):
                os.remove(os.path.join(line, name))
        rows = ["serial,serial_no,hw_rev"]
        self.pool_rows = self.a.devices + self.a.spare
        for i in range(self.pool_rows):
            rows.append(f"SN{1001 + i:07d},SN{1001 + i:07d},3")
        with open(os.path.join(line, "nvs-values.csv"), "w") as f:
            f.write("\n".join(rows) + "\n")
        self.run("registry", "escrow-keygen", "-o", os.path.join(line, "escrow_private.pem"),
                 "--pub-out", os.path.join(line, "escrow_public.pem"))
        manifest = os.path.join(line, "espforge.toml")
        text = open(manifest).read()
        text = re.sub(r'(?m)^station = .*$', f'station = "soak-{self.a.backend}"', text)
        text += '\n[escrow]\npublic_key = "escrow_public.pem"\n'
        open(manifest, "w").write(text)
        self.manifest = manifest
        self.sdkconfig = os.path.join(line, "sdkconfig")

    # --- devices --------------------------------------------------------------------------
    # The chip's factory OUI (as `espforge device create` gives it), then backend and index.
    OUI = {"esp32": "24:0a:c4", "esp32s3": "7c:df:a1", "esp32c3": "58:cf:79"}

    def mac(self, i):
        b = {"sqlite": 0x10, "postgres": 0x20}[self.a.backend]
        return f"{self.OUI[self.a.chip]}:{b:02x}:{(i >> 8) & 0xFF:02x}:{i & 0xFF:02x}"

    def serve(self, indices):
        ports = []
        creating = []
        for i in indices:  # four at a time
            state = os.path.join(self.work, "devices", f"dev{i:05d}")
            creating.append(subprocess.Popen([self.bin, "device", "create", "--chip", self.a.chip, "--state", state, "--sdkconfig", self.sdkconfig,
                                              "--mac", self.mac(i)], stdout=subprocess.DEVNULL))
            if len(creating) >= 4:
                if creating.pop(0).wait() != 0:
                    raise SystemExit("soak: device create failed")
        for p in creating:
            if p.wait() != 0:
                raise SystemExit("soak: device create failed")
        for i in indices:
            state = os.path.join(self.work, "devices", f"dev{i:05d}")
            out = os.path.join(self.work, "logs", f"serve-{i:05d}.out")
            args = [self.bin, "device", "serve", "--state", state, "--listen", "127.0.0.1:0", "--max-seconds", "7200"]
            dev_rng = random.Random(self.a.seed * 1_000_003 + i)
            if self.a.fault_rate > 0 and dev_rng.random() < self.a.fault_share:
                args += ["--faults", f"drop={self.a.fault_rate},flip={self.a.fault_rate}", "--seed", str(self.a.seed * 100_000 + i)]
                self.faulty_devices += 1
            p = subprocess.Popen(args, stdout=open(out, "w"), stderr=subprocess.STDOUT)
            self.servers.append(p)
            ports.append((p, out))
        urls = []
        for p, out in ports:
            for _ in range(400):
                m = re.search(r"listening on 127\.0\.0\.1:(\d+)", open(out).read())
                if m:
                    urls.append(f"socket://127.0.0.1:{m.group(1)}")
                    break
                if p.poll() is not None:
                    raise SystemExit(f"soak: device server exited: {open(out).read()[-400:]}")
                time.sleep(0.025)
            else:
                raise SystemExit(f"soak: device server did not start ({out})")
        return urls

    def stop_servers(self):
        for p in self.servers:
            if p.poll() is None:
                p.terminate()
        for p in self.servers:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.servers = []

    # --- one batch: provision, kill, resume ------------------------------------------------
    def provision_batch(self, b, indices):
        urls = self.serve(indices)
        port_args = []
        for u in urls:
            port_args += ["--port", u]
        base = [self.bin, "provision", "--manifest", self.manifest, "--registry", self.a.registry,
                "--before", "no-reset", "--json"] + self.a.provision_args + port_args
        t0 = time.time()
        done = False
        last_failed = None
        same = 0
        # Kill moments are drawn over the length of a whole provision run of a batch (median of
        # the runs that ended on their own), so most kills land while devices are being worked on.
        typical = (sorted(self.run_seconds)[len(self.run_seconds) // 2] if self.run_seconds
                   else self.a.first_guess * len(indices))
        for attempt in range(1, self.a.max_attempts + 1):
            self.attempts += 1
            args = base + (["--resume"] if attempt > 1 else [])
            out = os.path.join(self.work, "logs", f"provision-b{b:04d}-a{attempt}.jsonl")
            kill_at = None
            # Runs 1 and 2 of a batch are killed with the kill rate, run 3 with half of it.
            rate = self.a.kill_rate if attempt <= 2 else self.a.kill_rate / 2
            if attempt <= self.a.kill_attempts and self.rng.random() < rate:
                kill_at = self.rng.uniform(0.1, max(0.5, typical * 0.9))
            with open(out, "w") as f:
                started = time.time()
                p = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT)
                try:
                    rc = p.wait(timeout=kill_at if kill_at is not None else self.a.attempt_timeout)
                except subprocess.TimeoutExpired:
                    p.send_signal(signal.SIGKILL)
                    p.wait()
                    rc = -9
                    if kill_at is not None:
                        self.kills += 1
                        f.write(f"\n# soak: SIGKILL after {kill_at:.2f} s\n")
                    else:
                        self.hangs += 1
                        f.write(f"\n# soak: HANG: no exit within {self.a.attempt_timeout} s, SIGKILL\n")
                        log(f"  batch {b}: attempt {attempt} hung for {self.a.attempt_timeout} s (killed): {out}")
            if rc != -9 and attempt == 1:
                self.run_seconds.append(time.time() - started)
            if rc == 0:
                done = True
                break
            if rc == -9:
                continue
            failed = []
            for line in open(out):
                if line.startswith('{"summary"'):
                    s = json.loads(line)["summary"]
                    if not s.get("ok"):
                        failed.append((s.get("mac"), s.get("failedStep"), s.get("reason")))
            key = sorted((m or "?", st or "?") for m, st, _ in failed)
            same = same + 1 if key == last_failed else 0
            last_failed = key
            if same >= self.a.same_failure_limit:
                break
        self.stop_servers()
        secs = time.time() - t0
        if done:
            self.batch_seconds.append(secs)
        else:
            self.unfinished_batches.append(b)
        return secs, done

    def drill(self):
        os.makedirs(os.path.join(self.work, "devices"), exist_ok=True)
        os.makedirs(os.path.join(self.work, "logs"), exist_ok=True)
        t0 = time.time()
        self.make_line()
        n, bs = self.a.devices, self.a.batch
        batches = [list(range(s, min(n, s + bs))) for s in range(0, n, bs)]
        for b, idx in enumerate(batches):
            secs, done = self.provision_batch(b, idx)
            log(f"  [{self.a.backend}] batch {b + 1}/{len(batches)}: {len(idx)} devices, {secs:.1f} s"
                f"{'' if done else ' (not every device finished)'}; kills so far {self.kills}, attempts {self.attempts}")
        provision_wall = time.time() - t0
        # Registry export into the work folder: it is searched for key bytes like everything else.
        export = os.path.join(self.work, "registry-export.json")
        self.run("registry", "export", "--json", "-o", export, "--registry", self.a.registry)
        if self.a.pg_dump:
            # The whole database as SQL text (tables, escrow blobs), searched like the rest.
            subprocess.run(["pg_dump", "--no-owner", "-f", os.path.join(self.work, "registry.pgdump.sql"), self.a.pg_dump],
                           check=True, capture_output=True)
        audit = [self.bin, "soak-audit", "--manifest", self.manifest, "--registry", self.a.registry,
                 "--devices", os.path.join(self.work, "devices"), "--scan", self.work,
                 "--pool-rows", str(self.pool_rows), "--json",
                 "--escrow-private", os.path.join(self.work, "line", "escrow_private.pem")]
        for extra in self.a.scan:
            audit += ["--scan", extra]
        t1 = time.time()
        r = subprocess.run(audit, capture_output=True, text=True)
        audit_wall = time.time() - t1
        try:
            fig = json.loads(r.stdout.strip().splitlines()[-1])
        except Exception:
            raise SystemExit(f"soak: the audit failed (exit {r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
        faults = {"droppedBytes": 0, "flippedBits": 0}
        for name in os.listdir(os.path.join(self.work, "devices")):
            try:
                inj = json.load(open(os.path.join(self.work, "devices", name, "stats.json"))).get("faults", {})
            except (OSError, ValueError):
                continue
            for k in faults:
                faults[k] += int(inj.get(k, 0))
        # The registry's password (PostgreSQL) appears in no file the line wrote: logs, exports, dumps.
        password_hits = []
        m = re.match(r"postgres(?:ql)?://[^:/@]+:([^@/]+)@", self.a.registry)
        if m:
            secret = m.group(1).encode()
            for root, _, files in os.walk(self.work):
                for name in files:
                    path = os.path.join(root, name)
                    try:
                        if secret in open(path, "rb").read():
                            password_hits.append(os.path.relpath(path, self.work))
                    except OSError:
                        pass
        fig.update({
            "passwordInFiles": len(password_hits),
            "backend": self.a.backend, "chip": self.a.chip, "kills": self.kills, "provisionRuns": self.attempts, "hangs": self.hangs,
            "unfinishedBatches": len(self.unfinished_batches), "batches": len(batches), "batchSize": bs,
            "devicesWithFaults": self.faulty_devices, "faultRate": self.a.fault_rate,
            "droppedBytes": faults["droppedBytes"], "flippedBits": faults["flippedBits"],
            "provisionWallSeconds": round(provision_wall, 1), "auditWallSeconds": round(audit_wall, 1),
        })
        json.dump(fig, open(os.path.join(self.work, "figures.json"), "w"), indent=1, sort_keys=True)
        return fig


def report(fig):
    fig.setdefault("refusedBoards", 0)
    zero = ["silentWrongWrites", "identitiesClaimedTwice", "identitiesLost", "inconsistentRecords", "keyBytesOutside",
            "escrowNotRecovering", "refusedBoards", "hangs", "passwordInFiles"]
    b = fig["backend"]
    log(f"--- {b}: {fig['devices']} {fig.get('chip', 'esp32')} devices, {fig['batches']} batches of {fig['batchSize']}, "
        f"{fig['devicesWithFaults']} with transport faults (drop = flip = {fig['faultRate']}: "
        f"{fig['droppedBytes']} bytes dropped, {fig['flippedBits']} bits flipped), "
        f"{fig['kills']} SIGKILLs, {fig['provisionRuns']} provision runs, "
        f"{fig['provisionWallSeconds']} s provisioning + {fig['auditWallSeconds']} s audit")
    log(f"  devices provisioned                        {fig['provisioned']}")
    log(f"  devices failed cleanly                     {fig['failedCleanly']}")
    for reason, n in sorted(fig.get("failureReasons", {}).items(), key=lambda kv: -kv[1]):
        log(f"    {n} x {reason}")
    log(f"  silent wrong writes                        {fig['silentWrongWrites']}  (must be 0)")
    log(f"  identities claimed twice                   {fig['identitiesClaimedTwice']}  (must be 0)")
    log(f"  identities lost                            {fig['identitiesLost']}  (must be 0; pool {fig['poolRows']}: "
        f"{fig['identitiesFree']} free, {fig['identitiesHeldByFailed']} held by cleanly failed devices)")
    log(f"  records in an inconsistent state           {fig['inconsistentRecords']}  (must be 0)")
    log(f"  key bytes found outside chip and escrow    {fig['keyBytesOutside']}  (must be 0; {fig['keysSearched']} keys "
        f"searched in {fig['filesScanned']} files, {fig['bytesScanned']} bytes)")
    log(f"  escrow not recovering the chip's keys      {fig['escrowNotRecovering']}  (must be 0; {fig['escrowChecked']} provisioned devices unsealed)")
    log(f"  boards of the drill refused by the line    {fig.get('refusedBoards', 0)}  (must be 0)")
    if b == "postgres":
        log(f"  files holding the registry password        {fig['passwordInFiles']}  (must be 0)")
    log(f"  provision runs that hung                   {fig['hangs']}  (must be 0)")
    unaccounted = fig["devices"] - fig["provisioned"] - fig["failedCleanly"]
    if unaccounted:
        log(f"  devices neither provisioned nor failed     {unaccounted}")
    for p in fig.get("problems", [])[:40]:
        log(f"  problem: {p}")
    return all(fig[k] == 0 for k in zero) and unaccounted == 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--backend", required=True, choices=["sqlite", "postgres"])
    ap.add_argument("--chip", default="esp32", choices=["esp32", "esp32s3", "esp32c3"],
                    help="the chip of the served devices and of the demo line they are provisioned with")
    ap.add_argument("--registry", required=True)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--spare", type=int, default=5)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--kill-rate", type=float, default=0.75)
    ap.add_argument("--kill-attempts", type=int, default=3)
    ap.add_argument("--max-attempts", type=int, default=8)
    ap.add_argument("--same-failure-limit", type=int, default=2)
    ap.add_argument("--attempt-timeout", type=float, default=600)
    ap.add_argument("--first-guess", type=float, default=0.5, help="seconds per device of a batch, before one was timed")
    ap.add_argument("--fault-rate", type=float, default=5e-6)
    ap.add_argument("--fault-share", type=float, default=0.25)
    ap.add_argument("--scan", action="append", default=[])
    ap.add_argument("--pg-dump", default="", help="PostgreSQL URL (without parameters) to pg_dump into the work folder")
    ap.add_argument("--provision-arg", dest="provision_args", action="append", default=[])
    a = ap.parse_args()
    d = Drill(a)
    try:
        fig = d.drill()
    finally:
        d.stop_servers()
    ok = report(fig)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
