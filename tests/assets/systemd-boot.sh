#!/bin/bash
# Runs inside a booted minimal Debian root (tests/systemd_boot.rs), as the unit
# gnc-boot-test.service, after multi-user.target. Installs gnc as a package would (sysusers,
# tmpfiles, config), then drives gncd.service through systemd: start and STATUS=, a job,
# `systemctl stop` (checkpoint), start again, `systemctl reload`, SIGKILL of the main process
# (Restart=on-failure), and the job to its end. Writes /results/log, and /results/hash or
# /results/failed, then powers the container off.
set -u
export GNC_SOCKET=/run/gnc/gncd.sock
log() { echo "$(date +%T) $*" >> /results/log; }
finish() { systemctl poweroff --no-block; exit 0; }
fail() {
    log "FAIL: $*"
    { echo "$*"; systemctl status gncd --no-pager -l; journalctl -u gncd --no-pager | tail -40; } \
        > /results/failed 2>&1
    finish
}
# Waits up to $1 seconds for the command after it to succeed.
until_ok() {
    local limit=$1; shift
    for _ in $(seq $((limit * 5))); do "$@" && return 0; sleep 0.2; done
    return 1
}
field() { grep -o "\"$1\": *[^,}]*" | head -1 | sed 's/^[^:]*: *//; s/"//g'; }
iteration() { gncctl status "$JOB" --json 2>/dev/null | field iteration; }
past() { local i; i=$(iteration); [ -n "$i" ] && [ "$i" -ge "$1" ]; }
active() { [ "$(systemctl is-active gncd)" = active ]; }
checkpoints() { find /var/lib/gnc -name "ckpt-*.json" | sed "s/.*ckpt-0*//; s/\.json//; s/^$/0/" | sort -n; }

log "systemd $(systemctl --version | head -1 | cut -d' ' -f2), $(. /etc/os-release; echo "$PRETTY_NAME")"
systemd-sysusers /usr/lib/sysusers.d/gnc.conf || fail "systemd-sysusers"
systemd-tmpfiles --create /usr/lib/tmpfiles.d/gnc.conf || fail "systemd-tmpfiles"
rm -rf /var/lib/gnc/* /results/hash /results/failed
[ -e /bin/kill ] || [ -e /usr/bin/kill ] || log "no kill(1) here (procps is not installed)"

systemctl start gncd || fail "systemctl start gncd"
until_ok 10 test -S "$GNC_SOCKET" || fail "no socket"
status=$(systemctl show -p StatusText --value gncd)
log "STATUS=$status"
[ -n "$status" ] || fail "gncd sent no STATUS="

JOB=$(gncctl submit /results/job.toml --json | field id)
[ -n "$JOB" ] || fail "submit gave no job id"
log "submitted job $JOB"
until_ok 60 past 12 || fail "job $JOB did not reach iteration 12"
log "stop at iteration $(iteration)"
systemctl stop gncd || fail "systemctl stop gncd"
result=$(systemctl show -p Result --value gncd)
[ "$result" = success ] || fail "gncd stopped with result $result"
stopped_at=$(checkpoints | tail -1)
[ -n "$stopped_at" ] || fail "no checkpoint after systemctl stop"
log "checkpoint at $stopped_at after stop"

systemctl start gncd || fail "second start"
until_ok 60 past $((stopped_at + 8)) || fail "job did not resume past $stopped_at"
systemctl reload gncd || fail "systemctl reload gncd"
until_ok 10 sh -c 'journalctl -u gncd --no-pager | grep -q "reload:"' || fail "no reload in the journal"
log "reloaded: $(journalctl -u gncd --no-pager | grep -m1 'reload:' | sed 's/.*reload:/reload:/')"

pid=$(systemctl show -p MainPID --value gncd)
until_ok 60 past $((stopped_at + 16)) || fail "job stalled after reload"
log "SIGKILL gncd (pid $pid) at iteration $(iteration)"
systemctl kill -s KILL --kill-whom=main gncd || fail "systemctl kill"
until_ok 30 sh -c '[ "$(systemctl show -p NRestarts --value gncd)" -ge 1 ]' || fail "no restart"
until_ok 30 active || fail "gncd did not come back"
until_ok 10 test -S "$GNC_SOCKET" || fail "no socket after the restart"
log "restarted as pid $(systemctl show -p MainPID --value gncd)"

gncctl watch "$JOB" > /dev/null 2>&1 || fail "the job did not finish: $(gncctl status "$JOB" 2>&1)"
hash=$(gncctl status "$JOB" --json | field params_sha256)
[ -n "$hash" ] || fail "no params_sha256"
log "finished: $hash"
systemctl stop gncd
echo "$hash" > /results/hash
finish
