# lmm capture hook: sourced by lmm's block in each git hook (post-commit, post-merge,
# post-rewrite, post-checkout). lmm fills in the @…@ values at `lmm hooks install`.
#
# It queues one event file and wakes at most one background drainer, then returns. It never
# prints and never fails the hook: every command sits in a condition or ends in `|| :`, so it is
# safe under `sh -e` and `set -u`, and it does nothing at all when the store is gone. Only shell
# builtins run, besides one `git rev-parse` and the drainer's start: every fork is time git waits.
__lmm_q=@QUEUE@
if [ -d "$__lmm_q" ]; then
  # A name no running hook can share (our pid), taken exclusively (noclobber) in case a file
  # from an earlier process with the same pid is still queued.
  case $- in *C*) __lmm_nc=1 ;; *) __lmm_nc= ;; esac
  set -C
  __lmm_n=0
  __lmm_t=
  while [ "$__lmm_n" -lt 64 ]; do
    if { : >"$__lmm_q/ev.$$.$__lmm_n.q"; } 2>/dev/null; then __lmm_t="$__lmm_q/ev.$$.$__lmm_n"; break; fi
    __lmm_n=$((__lmm_n + 1))
  done
  [ -n "$__lmm_nc" ] || set +C
  if [ -n "$__lmm_t" ]; then
    if [ "${__lmm_hook:-}" = post-rewrite ]; then
      # post-rewrite gets "<old> <new>" lines on stdin: keep them, and hand the same lines to
      # the rest of this hook (a chained original hook reads them after us).
      if cat >|"$__lmm_t.in" 2>/dev/null; then exec 0<"$__lmm_t.in" || :; fi
    fi
    # One git call gives the commit and the branch (refs/heads/…, or HEAD when detached); two
    # empty lines when HEAD is unborn.
    __lmm_h=$(git rev-parse HEAD --symbolic-full-name HEAD 2>/dev/null) || __lmm_h='
'
    # One write; the drainer takes the event once the closing "end" line is there.
    printf '%s\n' lmm-event-1 "${__lmm_hook:-}" "$PWD" "$__lmm_h" "$@" end >>"$__lmm_t.q" 2>/dev/null || :
    __lmm_p=
    if [ -r @PIDFILE@ ]; then read -r __lmm_p <@PIDFILE@ 2>/dev/null || :; fi
    if [ -z "$__lmm_p" ] || ! kill -0 "$__lmm_p" 2>/dev/null; then
      # Fully detached (double fork, stdio on /dev/null) so git does not wait for it.
      ( @PYTHON@ -m lmm_cli.jobs.drain @STORE@ </dev/null >/dev/null 2>&1 & ) >/dev/null 2>&1 || :
    fi
  fi
fi
unset __lmm_q __lmm_t __lmm_p __lmm_h __lmm_n __lmm_nc
