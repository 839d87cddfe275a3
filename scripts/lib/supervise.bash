# Process supervision for scripts/run (sourced, not run). Plain bash, so the run command needs
# nothing beyond the virtualenv; honcho was considered, but it stops everything when one process
# exits instead of restarting it.
#
#   supervise NAME COMMAND [ARGS...]   run COMMAND in the background; whenever it exits, say
#                                      which one died and how, and start it again
#   supervised_stop                    stop every supervised command (SIGTERM, then wait)
#
# Restarts back off (1 s, doubling up to 30 s) while a command keeps dying within 10 s of its
# start, so a broken one does not spin. Each supervisor is a background subshell that forwards
# SIGTERM to its command and waits for it, so a worker's warm shutdown still completes.

SUPERVISED_PIDS=()

supervise() {
  local name=$1
  shift
  (
    set +e
    child=""
    pause=""
    # shellcheck disable=SC2317  # invoked by the trap
    stop_child() {
      trap '' TERM INT
      if [ -n "$child" ]; then
        kill -TERM "$child" 2>/dev/null
        wait "$child" 2>/dev/null
      fi
      if [ -n "$pause" ]; then kill "$pause" 2>/dev/null; fi
      exit 0
    }
    trap stop_child TERM INT
    delay=1
    while true; do
      started=$SECONDS
      "$@" &
      child=$!
      echo "==> $name started (pid $child)"
      wait "$child"
      status=$?
      if [ "$status" -gt 128 ]; then
        how="killed by SIG$(kill -l "$((status - 128))" 2>/dev/null || echo "$((status - 128))")"
      else
        how="exited with status $status"
      fi
      if [ $((SECONDS - started)) -ge 10 ]; then delay=1; fi
      echo "==> $name (pid $child) $how; restarting in ${delay}s" >&2
      child=""
      sleep "$delay" &
      pause=$!
      wait "$pause" # interruptible by the trap, unlike a bare sleep
      pause=""
      delay=$((delay * 2 > 30 ? 30 : delay * 2))
    done
  ) &
  SUPERVISED_PIDS+=($!)
}

supervised_stop() {
  local pid
  for pid in "${SUPERVISED_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${SUPERVISED_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
