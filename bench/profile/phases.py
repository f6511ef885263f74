#!/usr/bin/env python3
"""Splits a whole-machine profile of `checkout-bench start` by target.

The start scenario runs raw produce (A), the gRPC floor (B) and StartCheckout
(C) in slices A B C C B A. This script buckets the samples in 0.1 s steps,
names each bucket by the frames in it (StartCheckout's handler, the health
service, or neither: raw produce), and prints the CPU per call of each
target split by process (the bench, the broker) and, inside the bench, by
library of the sampled function. docs/benchmarks.md, "Where the remaining
microseconds go", was made with it:

    perf record -a -g -F 1999 -o perf.data -- \
        target/release/checkout-bench start --broker-storage memory --concurrency 64 --duration 6
    perf script -i perf.data -F pid,tid,comm,time,ip,sym,dso > samples.txt
    bench/profile/phases.py BENCH_PID BROKER_PID raw=RAW/s grpc=GRPC/s start=START/s < samples.txt

BENCH_PID / BROKER_PID: the checkout-bench and nisshi process ids (the
first column of samples.txt); the rates: the run's own table.
"""
import sys, re, collections
bench, broker = sys.argv[1], sys.argv[2]
blocks = sys.stdin.read().split('\n\n')
samples = []
for block in blocks:
    b = block.strip().split('\n')
    if len(b) < 2: continue
    m = re.search(r'(\d+)/(\d+)\s+([\d.]+):', b[0])
    if not m: continue
    pid, t = m.group(1), float(m.group(3))
    frames = [l.strip() for l in b[1:]]
    samples.append((t, pid, frames))
B = 0.1
buckets = collections.defaultdict(lambda: collections.Counter())
for t, pid, frames in samples:
    k = int(t / B)
    stack = ' '.join(frames)
    if 'start_checkout' in stack or 'gateway::auth' in stack: buckets[k]['start'] += 1
    if 'tonic_health' in stack or 'HealthServer' in stack or 'health_check' in stack: buckets[k]['grpc'] += 1
    if pid == bench: buckets[k]['bench'] += 1
def phase(k):
    c = buckets.get(k)
    if not c or c['bench'] < 20: return None
    if c['start'] >= 3 and c['grpc'] == 0: return 'start'
    if c['grpc'] >= 3 and c['start'] == 0: return 'grpc'
    if c['start'] == 0 and c['grpc'] == 0: return 'raw'
    return None
ph = {k: phase(k) for k in buckets}
# print timeline
ks = sorted(buckets)
print(''.join({'start':'S','grpc':'G','raw':'R',None:'.'}[ph[k]] for k in ks))
def cat(sym, dso):
    s = sym
    if 'kernel' in dso: return 'kernel'
    if s.startswith('rd_') or s.startswith('rdk') or 'rdkafka' in s: return 'librdkafka'
    for k, v in [('h2::','h2/hyper/http'),('hyper','h2/hyper/http'),('http::','h2/hyper/http'),('http_body','h2/hyper/http'),('tonic','tonic/prost/tower'),('prost','tonic/prost/tower'),('tower','tonic/prost/tower'),('serde_json','serde_json'),('jsonwebtoken','jwt'),('ring','jwt'),('sha2','jwt'),('hmac','jwt'),('base64','jwt'),('tracing','tracing'),('tokio','tokio'),('gateway::','gateway'),('checkout_contract','contract'),('prometheus','prometheus'),('uuid','uuid'),('chrono','chrono')]:
        if k in s: return v
    if 'libc' in dso:
        if any(x in s for x in ['malloc','free','realloc','_int_','unlink_chunk']): return 'malloc'
        if 'mem' in s: return 'libc mem*'
        if 'pthread' in s or 'lll' in s or 'mtx' in s or 'cnd' in s: return 'libc locks'
        return 'libc other'
    if 'vdso' in dso: return 'clock (vdso)'
    if 'rust_alloc' in s or 'rdl_alloc' in s or 'rust_dealloc' in s: return 'malloc'
    return 'other rust'
per = {p: collections.Counter() for p in ['raw','grpc','start']}
secs = collections.Counter()
for k in ks:
    if ph[k]: secs[ph[k]] += 1
for t, pid, frames in samples:
    p = ph.get(int(t / B))
    if not p: continue
    leaf = frames[0].split(None, 1)[1] if len(frames[0].split(None,1))>1 else ''
    mm = re.match(r'(.*) \((.*)\)$', leaf)
    sym, dso = (mm.group(1), mm.group(2)) if mm else (leaf, '')
    who = 'broker' if pid == broker else ('bench' if pid == bench else ('idle' if pid == '0' else 'other'))
    per[p][who] += 1
    if who == 'bench': per[p]['b:' + cat(sym, dso)] += 1
print('buckets (0.1 s) per phase', dict(secs))
HZ = 1999
rates = {k: float(v) for k, v in (a.split('=') for a in sys.argv[3:])}
keys = sorted(set().union(*[set(c) for c in per.values()]), key=lambda k: -per['start'][k])
print(f"{'':28s} {'raw':>8s} {'grpc':>8s} {'start':>8s}   (us of CPU per call)")
for k in keys:
    row = []
    for p in ['raw','grpc','start']:
        cpu_s_per_s = per[p][k] / HZ / (secs[p] * B)
        row.append(cpu_s_per_s / rates[p] * 1e6 if rates.get(p) else 0)
    print(f"{k:28s} {row[0]:8.1f} {row[1]:8.1f} {row[2]:8.1f}")
