#!/bin/sh
# One image, five roles: web (default), worker, scheduler, maintenance, migrate.
set -eu

if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
  # Metrics files belong to this container's processes; stale ones would be counted twice.
  rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
fi

case "${1:-web}" in
  web)
    exec gunicorn -c docker/gunicorn.conf.py project.asgi:application ;;
  worker)
    # Up to JOBS_WORKER_CONCURRENCY jobs at once in threads. SIGTERM is a warm shutdown:
    # running jobs get JOBS_SHUTDOWN_GRACE seconds, the rest go back to the queue; a job cut
    # off by a kill is recovered by reconcile_jobs (see README "Jobs").
    exec python manage.py rqworker --worker-class jobs.worker.ThreadPoolWorker \
      completions default --with-scheduler ;;
  scheduler)
    # Exactly one per deployment: queues reconcile_jobs every JOBS_RECONCILE_INTERVAL seconds
    # on the `maintenance` queue.
    exec python manage.py rqcron jobs.cron ;;
  maintenance)
    # Serves only the `maintenance` queue (job recovery), so a backlog of replies on the
    # completion workers never delays it. Light: one job at a time, no fork.
    exec python manage.py rqworker --worker-class rq.worker.SimpleWorker maintenance ;;
  migrate)
    python manage.py migrate --noinput
    exec python manage.py seed_models ;;
  *)
    exec "$@" ;;
esac
