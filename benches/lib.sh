# Shell helpers shared by benches/load.sh, edge_load.sh, profile.sh, ab.sh and
# refresh_load.sh, which source this file from the repository root
# (`. benches/lib.sh`). Only function definitions: sourcing it runs nothing.
# Only what several scripts do identically lives here; their cleanup traps,
# readiness waits and report layouts differ and stay in each script.

# missing_tools TOOL... -> the TOOLs not on PATH, space-separated; empty when
# all are there.
missing_tools() {
  local tool missing=()
  for tool in "$@"; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  echo "${missing[*]}"
}

# port -> a loopback TCP port that was free a moment ago.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# cpu_ticks PID -> user + system CPU time of PID so far, in clock ticks.
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

# machine -> "N cores, <CPU model>, N GiB RAM", for a report's Machine line.
machine() {
  echo "$(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(free -g | awk '/Mem:/ {print $2}') GiB RAM"
}

# wrk_summary OUTPUT -> "requests/s p50 p99 requests" of a `wrk --latency` run
# (a field wrk did not print is left empty; callers squeeze the spaces).
wrk_summary() {
  local out=$1
  echo "$(awk '/Requests\/sec/ {print $2}' <<<"$out") $(awk '$1=="50%" {print $2}' <<<"$out") \
$(awk '$1=="99%" {print $2}' <<<"$out") $(awk '/requests in/ {print $1}' <<<"$out")"
}

# wrk_non2xx OUTPUT -> wrk's count of non-2xx answers; empty when it printed none.
wrk_non2xx() { awk '/Non-2xx/ {print $NF}' <<<"$1"; }

# wrk_socket_errors OUTPUT SEPARATOR -> "connect=N<SEP>read=N<SEP>write=N<SEP>timeout=N";
# empty when wrk reported no socket errors.
wrk_socket_errors() {
  awk -v sep="$2" '/Socket errors/ {gsub(",", ""); print "connect=" $4 sep "read=" $6 sep "write=" $8 sep "timeout=" $10}' <<<"$1"
}

# --- Shared by benches/load.sh and benches/edge_load.sh -----------------------

# cpu_busy SECONDS -> percent of all CPU time not idle over the next SECONDS
# (other work on the machine skews everything: the reports note it).
cpu_busy() {
  local a b
  a=($(awk '/^cpu / {print $2+$3+$4+$5+$6+$7+$8, $5+$6}' /proc/stat)); sleep "$1"
  b=($(awk '/^cpu / {print $2+$3+$4+$5+$6+$7+$8, $5+$6}' /proc/stat))
  echo $(( 100 - (b[1] - a[1]) * 100 / (b[0] - a[0]) ))
}
# busy_jiffies / all_jiffies -> machine-wide CPU time so far (busy: user, nice,
# system, irq, softirq; all: the same plus idle and iowait), in clock ticks.
busy_jiffies() { awk '/^cpu / {print $2+$3+$4+$7+$8}' /proc/stat; }
all_jiffies() { awk '/^cpu / {print $2+$3+$4+$5+$6+$7+$8}' /proc/stat; }
# child_jiffies: CHILD = user+sys of the calling shell's finished children, in
# clock ticks. Call it in the script's own shell (not in $(...): a subshell
# would report its own children); it writes $WORK/times.
child_jiffies() {
  times > "$WORK/times"
  CHILD=$(awk -v hz="$(getconf CLK_TCK)" 'NR==2 {
    t=0; for (i=1;i<=2;i++) { split($i, a, "m"); t += a[1]*60 + a[2] } printf "%d", t*hz }' "$WORK/times")
}

# gone PID -> true when PID is no longer a running child of this script
# (exited, a zombie, or reaped).
gone() {
  local stat state ppid
  stat=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 0
  read -r state ppid _ <<<"$stat"
  [ "$state" = Z ] || [ "$ppid" != "$$" ]
}

# rss_kb PID -> resident set size of PID, in KiB.
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
# mib KIB -> "12.3" (MiB, one decimal).
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k/1024}'; }
# ms DURATION -> a wrk/h2load duration (us/ms/s) in milliseconds.
ms() {
  awk -v v="$1" 'BEGIN {n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n=n; else if (v ~ /m$/) n*=60000; else if (v ~ /s$/) n*=1000; printf "%.3f", n}'
}
# ratio A B -> A/B with two decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
# median NUMBER... -> the median (the mean of the middle two for an even count).
median() {
  printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {if (NR==0) exit 1; if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'
}

# bench_gateway_yaml PORT ADMIN UPSTREAM_PORT SECRET [EXTRA] -> the gateway config load.sh,
# profile.sh and ab.sh run: one worker, access log off, routes /open (auth: none),
# /api (JWT) and /plug (JWT + claims-to-headers; BENCH_PLUGIN_MODULE picks another
# build of it, e.g. plugins/out/claims-to-headers-v1.wasm), EXTRA appended.
bench_gateway_yaml() {
  cat <<YAML
listeners:
  proxy: "127.0.0.1:$1"
  admin: "127.0.0.1:$2"
  threads: 1
  grace_period: 0s
  drain_window: 0s
log:
  level: warn
  access: false
jwt:
  issuer: bench
  keys:
    - kid: bench
      algorithms: [HS256]
      secret: "$4"
      sign: true
upstreams:
  demo:
    targets: ["127.0.0.1:$3"]
plugins:
  identity:
    module: ${BENCH_PLUGIN_MODULE:-$PWD/plugins/out/claims-to-headers.wasm}
    allow_headers: [X-User-Id, X-User-Role, X-User-Email]
    config:
      headers:
        - { header: X-User-Id, claim: sub, required: true }
        - { header: X-User-Role, claim: role }
        - { header: X-User-Email, claim: email }
routes:
  - name: open
    match: { path_prefix: /open }
    upstream: demo
    auth: none
  - name: authed
    match: { path_prefix: /api }
    upstream: demo
  - name: authed-plugin
    match: { path_prefix: /plug }
    upstream: demo
    plugins: [identity]
${5:-}
YAML
}
