package supervisor

// Background processes live entirely inside the container, so any server
// can serve them by sandbox ID and process ID, and removing the container
// ends them. Each has a directory procBase/<n>/ that a shell supervisor
// (procSupervisor, started detached by procStartScript) keeps:
//
//	spec            "<started unix ns> <open stdin 0|1> <timeout s> <head cap> <tail cap> <marker> <command, Go-quoted>"
//	run.sh          cd + env + exec of the command, written by the driver
//	state           "<command pid = pgid> <supervisor pid> <its start time> <uptime cs at start> <stdin holder pid> [reaper]", once running;
//	                "reaper" when the supervisor is the uploaded helper (see helper.go)
//	exit            "<status> <timed out 0|1> <uptime cs at end>", once ended and its output drained
//	stdout.<offset> output segments named by the absolute offset of their
//	stderr.<offset> first byte: the head, then at most two tail segments
//	stdin           FIFO, when stdin is kept open; stdin.closed once closed
//	.released       once nothing of the process is left under the helper, which
//	                may then supervise another (a spare, see internal/helper/spare.go)
//	.kill           left by a kill for the helper, before its signal (see killtree)
//
// procBase/.gone/<n> marks a removed number, so numbers are never reused.
// Only sh and busybox-level tools are needed: setsid, mkfifo, dd
// (iflag=skip_bytes,count_bytes), stat -c, sleep with fractions, timeout.
//
// procBase is under $TMPDIR when the sandbox sets a plain absolute one (a
// sandbox that shares its host's /tmp, as a test fake does, gets its own),
// else under /tmp. Paths never hold spaces: the scripts split on them.

const procDir = ".mcp-sandbox-procs"

// marker tags the command and everything it starts, so that a kill finds
// children that left its process group (the shell supervisor's only way;
// the command can remove it).
const marker = "MCP_SANDBOX_EXEC"

// procPrelude is shared by every script. now sets u to the uptime in
// centiseconds (a clock every process in the container shares); alive
// checks that a pid is still the process that started at a given time;
// desc prints a process's record for the driver to parse.
const procPrelude = `b=${TMPDIR:-/tmp}
case $b in /*[!A-Za-z0-9/._-]*|[!/]*) b=/tmp;; esac
b=${b%/}/` + procDir + `
now() { read -r u _ </proc/uptime; u=${u%.*}${u#*.}; while :; do case $u in 0?*) u=${u#0};; *) break;; esac; done; }
alive() {
  [ -n "$1" ] && [ -r "/proc/$1/stat" ] && read -r l <"/proc/$1/stat" || return 1
  w=$2; l=${l##*) }; set -- x $l; [ $# -gt 20 ] || return 1; shift 20; [ "$1" = "$w" ]
}
desc() {
  d=$1
  [ -f "$d/spec" ] && [ -f "$d/state" ] || return 0
  printf 'proc %s\n' "${d##*/}"
  read -r x <"$d/spec"; printf 'spec %s\n' "$x"
  read -r x <"$d/state"; printf 'state %s\n' "$x"
  if [ ! -f "$d/exit" ]; then
    set -- $x
    if alive "$2" "$3"; then
      echo running
      [ -f "$d/stdin.closed" ] && echo stdinclosed
      return 0
    fi
  fi
  [ -f "$d/exit" ] && read -r x <"$d/exit" && printf 'exit %s\n' "$x"
  return 0
}
segs() { stat -c 'seg %n %s' "$@" 2>/dev/null; return 0; }
# killtree TOKEN PGID SUP KIND kills the group, then everything else the
# command started: the helper (KIND reaper) finds all its descendants; the
# shell supervisor can only hunt the process's marker. .kill in the
# process's directory $d tells a helper that supervises one run after
# another which run the signal is for.
killtree() {
  kill -KILL -"$2" 2>/dev/null
  if [ "$4" = reaper ]; then : >"$d/.kill" 2>/dev/null; kill -USR2 "$3" 2>/dev/null; return 0; fi
  for i in 1 2 3 4 5; do
    k=$(grep -lzxF "` + marker + `=$1" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3)
    [ -z "$k" ] && return 0
    kill -KILL $k 2>/dev/null
  done
  return 0
}
found() { [ -f "$b/$1/spec" ] && [ -f "$b/$1/state" ] || { echo notfound; exit 0; }; d=$b/$1; }
`

// procSupervisor runs one process: "sup DIR" supervises, "copy DIR STREAM
// HEADCAP TAILCAP" copies a stream into its segments, "timer DIR SECONDS
// MARKER PGID" kills the process when its time is up. $1 is the script
// itself, so it can start its copiers. A copier's dd reads the pipe in
// records of at most 64 KiB, writing each as it comes (no fullblock, so
// output reaches the disk at once), and never more records than the
// segment has room for, so segments end exactly at their caps; dd's
// "full+partial records in" gives the bytes moved, or stat does.
const procSupervisor = procPrelude + `set -f
self=$1; mode=$2; d=$3
if [ "$mode" = copy ]; then
  s=$4; cap=$5; tc=$6; st=0; sz=0; t1=; t2=; seg=$d/$s.0
  while :; do
    room=$((cap - sz))
    if [ "$room" -le 0 ]; then
      st=$((st + sz)); sz=0; cap=$tc; seg=$d/$s.$st
      : >"$seg"
      if [ -n "$t1" ]; then
        # A foreground run following the output reads every byte: wait for
        # it to pass the segment before it goes, unless it stops moving for
        # 10s (its reader went away) and would hold the command up.
        was=; still=0; : >"$d/.wait.$s"
        while [ -f "$d/.follow" ] && read -r fp fs <"$d/.follow" && alive "$fp" "$fs"; do
          at=; [ -f "$d/.pos.$s" ] && read -r at <"$d/.pos.$s"
          [ "${at:-0}" -ge "$t2" ] 2>/dev/null && break
          if [ "$at" = "$was" ]; then still=$((still + 1)); [ "$still" -gt 2000 ] && break; else was=$at; still=0; fi
          sleep 0.005
        done
        rm -f "$d/$s.$t1" "$d/.wait.$s"
      fi
      t1=$t2; t2=$st
      continue
    fi
    if [ "$room" -ge 65536 ]; then bs=65536; cnt=$((room / 65536)); else bs=$room; cnt=1; fi
    [ "$cnt" -gt 1024 ] && cnt=1024
    LC_ALL=C dd bs="$bs" count="$cnt" 2>"$d/.dd.$s" >>"$seg"
    rec=
    while read -r r x; do case $x in "records in") rec=$r; break;; esac; done <"$d/.dd.$s"
    full=${rec%+*}; part=${rec#*+}
    case "$rec" in
      *[!0-9+]*|+*|*+|'') x=$(stat -c %s "$seg") && sz=$x; continue ;;
    esac
    if [ "$part" = 0 ]; then sz=$((sz + full * bs)); else x=$(stat -c %s "$seg") && sz=$x; fi
    [ $((full + part)) -lt "$cnt" ] && break
  done
  : >"$d/.done.$s"
  exit 0
fi
if [ "$mode" = timer ]; then
  set +f; sleep "$4"; : >"$d/timedout"; killtree "$5" "$6" 0 shell; exit 0
fi
fail() { printf '%s\n' "$*" >"$d/fail"; exit 1; }
read -r x <"$d/spec"; set -- $x
open=$2; to=$3; hc=$4; tc=$5; token=$6
read -r l </proc/$$/stat; l=${l##*) }; set -- x $l; shift 20; me=$1
mkfifo "$d/.out" "$d/.err" || fail "cannot make FIFOs under $d: the image needs mkfifo and a writable /tmp"
setsid /bin/sh -c "$self" mcp-sandbox-copy "$self" copy "$d" stdout "$hc" "$tc" <"$d/.out" & co=$!
setsid /bin/sh -c "$self" mcp-sandbox-copy "$self" copy "$d" stderr "$hc" "$tc" <"$d/.err" & ce=$!
in=/dev/null; holder=0; feeder=
[ -f "$d/stdin.init" ] && in=$d/stdin.init
if [ "$open" = 1 ]; then
  mkfifo "$d/stdin" "$d/.in" || fail "cannot make the stdin FIFO under $d"
  # Held open for writing, the FIFO gives end-of-file only once closed.
  sleep 2147483647 3<>"$d/stdin" & holder=$!
  { [ -f "$d/stdin.init" ] && cat "$d/stdin.init"; exec cat "$d/stdin"; } >"$d/.in" 2>/dev/null & feeder=$!
  in=$d/.in
fi
now; up0=$u
setsid /bin/sh "$d/run.sh" <"$in" >"$d/.out" 2>"$d/.err" & pid=$!
printf '%s %s %s %s %s\n' "$pid" "$$" "$me" "$up0" "$holder" >"$d/state.tmp" && mv -f "$d/state.tmp" "$d/state" || { kill -KILL -"$pid"; fail "cannot write $d/state"; }
tk=
if [ "$to" != 0 ]; then
  setsid /bin/sh -c "$self" mcp-sandbox-timer "$self" timer "$d" "$to" "$token" "$pid" </dev/null >/dev/null 2>&1 & tk=$!
fi
wait "$pid"; rc=$?
now; up1=$u
# A timer that fired is left to finish hunting the marker.
[ -n "$tk" ] && [ ! -f "$d/timedout" ] && kill -KILL -"$tk" 2>/dev/null
[ "$holder" != 0 ] && kill "$holder" "$feeder" 2>/dev/null
# Children left holding the output get a moment before the copiers stop.
# The moment restarts while output still moves (a copier writing, or
# waiting for a follower that is still reading): only a quiet pipe is cut.
# A copier holding a segment for a follower is not quiet, only unread.
i=0; j=0; last=
while [ ! -f "$d/.done.stdout" ] || [ ! -f "$d/.done.stderr" ]; do
  sig=$(stat -c %s "$d"/stdout.* "$d"/stderr.* 2>/dev/null; cat "$d/.pos.stdout" "$d/.pos.stderr" 2>/dev/null)
  [ "$sig" != "$last" ] && { last=$sig; i=0; }
  w=0; [ -f "$d/.wait.stdout" ] || [ -f "$d/.wait.stderr" ] && { i=0; w=1; }
  i=$((i + 1)); j=$((j + 1)); [ "$i" -gt 45 ] || [ "$j" -gt 4000 ] && [ "$w" = 0 ] && break
  if [ "$i" -le 5 ]; then sleep 0.001; else sleep 0.005; fi
done
kill -KILL -"$co" -"$ce" 2>/dev/null
t=0; [ -f "$d/timedout" ] && t=1
printf '%s %s %s\n' "$rc" "$t" "$up1" >"$d/exit.tmp" && mv -f "$d/exit.tmp" "$d/exit"
rm -f "$d/.out" "$d/.err" "$d/.in" "$d/stdin" "$d/.dd.stdout" "$d/.dd.stderr" "$d/.wait.stdout" "$d/.wait.stderr"
exit 0`

// procStartFunc defines start SPEC RUN SUPERVISOR HASSTDIN CWD [follow]:
// check that CWD (when set) is a directory, allocate a number, write the
// spec and run.sh, the initial stdin from the script's own stdin when
// HASSTDIN is 1, start the supervisor detached and return once the command
// runs, with d set to its directory and n to its number. It also forgets
// the oldest finished processes beyond procKeepFinished.
const procStartFunc = `KEEP=` + procKeepFinished + `
start() {
  if [ -n "$5" ]; then
    [ -e "$5" ] || { echo "cwd missing"; exit 0; }
    [ -d "$5" ] || { echo "cwd notdir"; exit 0; }
  fi
  for x in setsid mkfifo dd stat; do
    command -v $x >/dev/null 2>&1 || { echo "error the sandbox has no $x, which background processes need"; exit 0; }
  done
  h=
  case $3 in helper:*) h=$b/.bin/${3#helper:}; [ -x "$h" ] || { echo "error nohelper"; exit 0; };; esac
  mkdir -p "$b/.gone" 2>/dev/null
  [ -d "$b/.gone" ] && [ -w "$b" ] || { echo "error cannot write $b: the image needs a writable /tmp"; exit 0; }
  n=1; [ -f "$b/next" ] && read -r n <"$b/next"
  case $n in ''|*[!0-9]*) n=1;; esac
  while :; do
    if mkdir "$b/$n" 2>/dev/null; then
      [ -e "$b/.gone/$n" ] || break
      rmdir "$b/$n"
    fi
    n=$((n + 1))
  done
  echo $((n + 1)) >"$b/next"
  # A marker only matters while next could be behind it (two starts racing
  # on the hint), so old ones go.
  if [ $((n % 512)) = 0 ]; then
    old=; for x in "$b"/.gone/*; do [ "${x##*/}" -lt $((n - 1024)) ] 2>/dev/null && old="$old $x"; done
    [ -n "$old" ] && rm -f $old
  fi
  d=$b/$n
  printf '%s\n' "$1" >"$d/spec"
  printf '%s\n' "$2" >"$d/run.sh"
  [ "$4" = 1 ] && cat >"$d/stdin.init"
  sup=$3
  if [ "$6" = follow ]; then
    read -r l </proc/$$/stat; l=${l##*) }; set -- x $l; shift 20
    printf '%s %s\n' "$$" "$1" >"$d/.follow"
  fi
  if [ -n "$h" ]; then
    env -u ` + marker + ` setsid "$h" sup "$d" </dev/null >/dev/null 2>&1 &
  else
    env -u ` + marker + ` setsid /bin/sh -c "$sup" mcp-sandbox-proc "$sup" sup "$d" </dev/null >/dev/null 2>&1 &
  fi
  i=0; sl=0.001
  while [ ! -f "$d/state" ]; do
    if [ -f "$d/fail" ]; then read -r x <"$d/fail"; : >"$b/.gone/$n"; rm -rf "$d"; echo "error $x"; exit 0; fi
    i=$((i + 1)); [ "$i" -gt 1000 ] && { echo "error the process supervisor did not start within 10s"; exit 0; }
    [ "$i" -gt 5 ] && sl=0.01
    sleep $sl
  done
  set -- "$b"/[0-9]*
  [ $# -gt $((KEEP + 8)) ] || return 0
  fin=; k=0
  for x in "$@"; do [ -f "$x/exit" ] && { fin="$fin ${x##*/}"; k=$((k + 1)); }; done
  [ "$k" -gt "$KEEP" ] || return 0
  for x in $(printf '%s\n' $fin | sort -n | head -n $((k - KEEP))); do : >"$b/.gone/$x"; rm -rf "$b/$x"; done
}
`

// procStartScript starts a process ($1-$5 as for start) and describes it.
const procStartScript = procPrelude + procStartFunc + `
start "$1" "$2" "$3" "$4" "$5"
desc "$d"; segs "$d"/stdout.* "$d"/stderr.*
exit 0`

// procRunScript starts a process ($1-$5 as for start) and follows it in
// the foreground for up to $6 centiseconds, in frames on stdout:
//
//	P <n>                      the process number, first
//	o|e <offset> <len>\n<len bytes>   new stdout or stderr output
//	x\n<record>                the end: the process's record, and
//	                           "removed" when it ended with no stream over
//	                           $7 bytes, so nothing was kept
//
// A command still running at the deadline is left running: the record
// says so. While it follows, the copiers keep every segment until it has
// read it (.follow, .pos.<stream>), so what it streams is the whole output. Each piece is opened before its frame is announced, so a
// segment rotated away in between is skipped rather than announced short.
const procRunScript = procPrelude + procStartFunc + procPickFunc + `
start "$1" "$2" "$3" "$4" "$5" follow
printf 'P %s\n' "$n"
now; end=$((u + $6)); keep=$7; oo=0; eo=0; sl=0.001; i=0
read -r x <"$d/state"; set -- $x; sp=$2; ss=$3
flush() {
  t=$1; shift; p0=$1
  pick "$@"
  pos=$p0
  for x in $plan; do
    f=${x%%:*}; r=${x#*:}; sk=${r%%:*}; r=${r#*:}; at=${r%%:*}; k=${r#*:}
    { printf '%s %s %s\n' "$t" "$at" "$k"; dd iflag=skip_bytes,count_bytes skip="$sk" count="$k" bs=65536 2>/dev/null; } 2>/dev/null <"$f" || break
    pos=$((at + k))
  done
}
while :; do
  fin=0; [ -f "$d/exit" ] || alive "$sp" "$ss" || fin=1; [ -f "$d/exit" ] && fin=1
  set -- $(stat -c '%n %s' "$d"/stdout.* "$d"/stderr.* 2>/dev/null)
  so=; se=
  while [ $# -ge 2 ]; do case ${1##*/} in stdout.*) so="$so $1 $2";; stderr.*) se="$se $1 $2";; esac; shift 2; done
  was=$((oo + eo))
  flush o "$oo" 999999999999 $so; oo=$pos; echo "$oo" >"$d/.pos.stdout"
  flush e "$eo" 999999999999 $se; eo=$pos; echo "$eo" >"$d/.pos.stderr"
  [ "$fin" = 1 ] && break
  now; [ "$u" -ge "$end" ] && break
  # Output flowing: look again at once; quiet: back off.
  [ $((oo + eo)) != "$was" ] && { sl=0.001; i=0; continue; }
  sleep $sl
  i=$((i + 1))
  [ "$i" -gt 10 ] && case $sl in 0.001) sl=0.005;; 0.005) sl=0.01;; 0.01) sl=0.02;; 0.02) sl=0.05;; esac
done
rm -f "$d/.follow"
echo x; desc "$d"
if [ "$fin" = 1 ] && [ "$oo" -le "$keep" ] && [ "$eo" -le "$keep" ]; then
  : >"$b/.gone/$n"; rm -rf "$d"; echo removed
else
  segs "$d"/stdout.* "$d"/stderr.*
fi
exit 0`

// procPickFunc defines pick POS WANT [NAME SIZE]...: which byte ranges of
// the segments to read for up to WANT bytes from POS. It sets from (where
// the data starts: past POS when POS was dropped), pos (where it ends) and
// plan ("file:skip:offset:count" pieces). Data is contiguous: it stops at
// a gap, and starts at the next kept byte when POS was dropped.
const procPickFunc = `
pick() {
  pos=$1; want=$2; shift 2; from=-1; plan=; list="$*"
  while [ "$want" -gt 0 ]; do
    best=; bs=0; bz=0
    set -- $list
    while [ $# -ge 2 ]; do
      st=${1##*.}
      if [ "$2" -gt 0 ] && [ $((st + $2)) -gt "$pos" ] && { [ -z "$best" ] || [ "$st" -lt "$bs" ]; }; then best=$1; bs=$st; bz=$2; fi
      shift 2
    done
    [ -z "$best" ] && break
    if [ "$bs" -gt "$pos" ]; then [ "$from" -ge 0 ] && break; pos=$bs; fi
    k=$((bs + bz - pos)); [ "$k" -gt "$want" ] && k=$want
    [ "$from" -lt 0 ] && from=$pos
    plan="$plan $best:$((pos - bs)):$pos:$k"
    pos=$((pos + k)); want=$((want - k))
  done
  [ "$from" -lt 0 ] && from=$pos
  return 0
}
`

// procWaitScript waits inside the container (no engine round trip per
// poll) up to $2 centiseconds for process $1 to end, then describes it.
const procWaitScript = procPrelude + `
found "$1"; now; end=$((u + $2)); sl=0.005
while [ ! -f "$d/exit" ]; do
  read -r x <"$d/state"; set -- $x; alive "$2" "$3" || break
  now; [ "$u" -ge "$end" ] && break
  sleep $sl
  case $sl in 0.005) sl=0.01;; 0.01) sl=0.02;; 0.02) sl=0.05;; esac
done
desc "$d"; segs "$d"/stdout.* "$d"/stderr.*`

// procListScript describes every process.
const procListScript = procPrelude + `
for d in "$b"/[0-9]*; do [ -d "$d" ] && desc "$d"; done
segs "$b"/[0-9]*/stdout.* "$b"/[0-9]*/stderr.*
exit 0`

// procReadScript reads stream $2 of process $1 from offset $3, at most $4
// bytes, waiting up to $5 centiseconds for output or the exit. It prints
// the record (state first: when it says exited, the data is complete),
// then "data <offset> <total> <n>" and n bytes (see pick).
const procReadScript = procPrelude + procPickFunc + `
found "$1"; s=$2; off=$3; lim=$4; now; end=$((u + $5)); sl=0.005
while :; do
  info=$(desc "$d")
  set -- $(stat -c '%n %s' "$d/$s".* 2>/dev/null)
  tot=0; list="$*"
  while [ $# -ge 2 ]; do st=${1##*.}; e=$((st + $2)); [ "$e" -gt "$tot" ] && tot=$e; shift 2; done
  case $info in *running*) run=1;; *) run=0;; esac
  [ "$tot" -gt "$off" ] || [ "$run" = 0 ] && break
  now; [ "$u" -ge "$end" ] && break
  sleep $sl
  case $sl in 0.005) sl=0.01;; 0.01) sl=0.02;; 0.02) sl=0.05;; esac
done
printf '%s\n' "$info"
[ "$off" -gt "$tot" ] && { echo "pastend $tot"; exit 0; }
pick "$off" "$lim" $list
echo "data $from $tot $((pos - from))"
for x in $plan; do
  f=${x%%:*}; r=${x#*:}; sk=${r%%:*}; k=${r##*:}
  dd if="$f" iflag=skip_bytes,count_bytes skip="$sk" count="$k" bs=65536 2>/dev/null || exit 0
done
exit 0`

// procSignalScript sends signal $2 to the process group of process $1.
const procSignalScript = procPrelude + `
found "$1"; sig=$2
read -r x <"$d/spec"; set -f; set -- $x; set +f; token=$6
read -r x <"$d/state"; set -- $x
[ ! -f "$d/exit" ] && alive "$2" "$3" || { echo exited; desc "$d"; exit 0; }
if [ "$sig" = KILL ]; then killtree "$token" "$1" "$2" "$6"; else kill -"$sig" -"$1" 2>/dev/null; fi
echo ok`

// procStdinScript writes its stdin to process $1 when $3 is 1, then closes
// the process's stdin when $2 is 1. Writers take turns (a mkdir lock), and
// one that the process does not read within 5s gives up.
const procStdinScript = procPrelude + `
found "$1"; closing=$2; data=$3
read -r x <"$d/spec"; set -f; set -- $x; set +f
[ "$2" = 1 ] || { echo nostdin; exit 0; }
read -r x <"$d/state"; set -- $x; holder=$5
[ ! -f "$d/exit" ] && alive "$2" "$3" && [ -p "$d/stdin" ] || { echo exited; desc "$d"; exit 0; }
[ -f "$d/stdin.closed" ] && { echo closed; exit 0; }
i=0
until mkdir "$d/.stdin.lock" 2>/dev/null; do
  i=$((i + 1)); [ "$i" -gt 500 ] && { echo busy; exit 0; }
  sleep 0.01
done
if [ "$data" = 1 ] && ! timeout 5 dd of="$d/stdin" bs=65536 conv=notrunc 2>/dev/null; then
  rmdir "$d/.stdin.lock"
  [ -f "$d/exit" ] && { echo exited; desc "$d"; exit 0; }
  echo timeout; exit 0
fi
if [ "$closing" = 1 ]; then : >"$d/stdin.closed"; kill "$holder" 2>/dev/null; fi
rmdir "$d/.stdin.lock"
echo ok`

// procRemoveScript kills process $1 if it runs, lets its supervisor record
// the end (up to 2s), and forgets it.
const procRemoveScript = procPrelude + `
found "$1"
read -r x <"$d/spec"; set -f; set -- $x; set +f; token=$6
read -r x <"$d/state"; set -- $x
# The helper outlives the command while something it started lives on,
# until it marks the run .released (a spare then goes on to other runs).
held() { alive "$2" "$3" && if [ "$6" = reaper ]; then [ ! -f "$d/.released" ]; else [ ! -f "$d/exit" ]; fi; }
if held "$@"; then
  killtree "$token" "$1" "$2" "$6"
  i=0
  while [ "$i" -lt 200 ] && held "$@"; do i=$((i + 1)); sleep 0.01; done
fi
: >"$b/.gone/${d##*/}"
rm -rf "$d"
echo ok`
