# Shell helpers shared by benches/load.sh and benches/refresh_load.sh, which
# source this file from the repository root (`. benches/lib.sh`). Only
# function definitions: sourcing it runs nothing. Only what both scripts did
# identically lives here; their cleanup traps, readiness waits, CPU-load
# measures and report helpers differ and stay in each script.

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
