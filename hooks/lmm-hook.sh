# lmm capture hook: sourced by lmm's block in each git hook (post-commit, post-merge,
# post-rewrite, post-checkout), or by the one line a user adds by hand to a hooks folder git tracks.
# `lmm hooks install` writes it to <git common dir>/lmm/hook.sh with the @…@ values filled in.
#
# It queues one event file and wakes at most one background drainer, then returns. It never
# prints and never fails the hook: every command sits in a condition or ends in `|| :`, so it is
# safe under `sh -e` and `set -u`, and it does nothing at all when the store is gone. Only shell
# builtins run, besides one `git rev-parse` (the block runs it and hands its output over in
# __lmm_r) and the drainer's start: every fork is time git waits.
#
# Which store: the repository is found at run time, from the git common dir it reports. When that
# is the one this file was written for (@OWNER@), events go to @STORE@. Otherwise the repository
# was moved or copied since: events go to <common dir>/lmm/ — its own — and the drainer started
# there settles which store is the repository's (its own .git/lmm, or the one under LMM_HOME that
# it adopts or copies) and rewrites this file. Never into another repository's store.
__lmm_nl='
'
if [ -z "${__lmm_r:-}" ]; then
  __lmm_r=$(git rev-parse --path-format=absolute --git-common-dir HEAD --symbolic-full-name HEAD 2>/dev/null) || :
fi
[ -n "${__lmm_hook:-}" ] || __lmm_hook=${0##*/}
# __lmm_r: the common dir, then the commit and the branch (refs/heads/…, or HEAD when detached);
# only the common dir when HEAD is unborn, and then two empty lines stand for the other two.
__lmm_g=${__lmm_r%%"$__lmm_nl"*}
__lmm_h=${__lmm_r#"$__lmm_g"}
__lmm_h=${__lmm_h#"$__lmm_nl"}
case $__lmm_h in *"$__lmm_nl"*) ;; *) __lmm_h=$__lmm_nl ;; esac
if [ "$__lmm_g" = @OWNER@ ]; then __lmm_s=@STORE@; else __lmm_s=$__lmm_g/lmm; fi
__lmm_q=$__lmm_s/queue
if [ -n "$__lmm_g" ] && [ -d "$__lmm_q" ]; then
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
    if [ "$__lmm_hook" = post-rewrite ]; then
      # post-rewrite gets "<old> <new>" lines on stdin: keep them, and hand the same lines to
      # the rest of this hook (a chained original hook reads them after us).
      if cat >|"$__lmm_t.in" 2>/dev/null; then exec 0<"$__lmm_t.in" || :; fi
    fi
    # One write; the drainer takes the event once the closing "end" line is there.
    printf '%s\n' lmm-event-1 "$__lmm_hook" "$PWD" "$__lmm_h" "$@" end >>"$__lmm_t.q" 2>/dev/null || :
    # Is a drainer running? drain.pid holds "PID STARTTIME" (field 22 of /proc/PID/stat): a pid
    # alone is recycled, so it counts only while /proc says the same process (not a zombie) has
    # it. Where there is no /proc, kill -0. In doubt, start one: a second drainer exits at once.
    __lmm_live=
    __lmm_p=
    __lmm_st=
    if [ "$__lmm_s" = @STORE@ ] && [ -r "$__lmm_s/drain.pid" ]; then
      read -r __lmm_p __lmm_st <"$__lmm_s/drain.pid" 2>/dev/null || :
    fi
    if [ -z "$__lmm_p" ]; then
      :
    elif [ -d /proc/self ]; then
      if [ -n "$__lmm_st" ] && read -r __lmm_x <"/proc/$__lmm_p/stat" 2>/dev/null; then
        __lmm_cp=') '  # "pid (comm) state …": comm may hold spaces and parentheses; cut at the last ") "
        __lmm_x=${__lmm_x##*"$__lmm_cp"}
        case $__lmm_x in
          Z*|X*) ;;
          *)
            __lmm_n=0
            while [ "$__lmm_n" -lt 19 ]; do __lmm_x=${__lmm_x#* }; __lmm_n=$((__lmm_n + 1)); done
            [ "${__lmm_x%% *}" != "$__lmm_st" ] || __lmm_live=1
            ;;
        esac
      fi
    elif kill -0 "$__lmm_p" 2>/dev/null; then
      __lmm_live=1
    fi
    if [ -z "$__lmm_live" ]; then
      # Fully detached (double fork, stdio on /dev/null) so git does not wait for it.
      ( @PYTHON@ -m lmm_cli.jobs.drain "$__lmm_s" </dev/null >/dev/null 2>&1 & ) >/dev/null 2>&1 || :
    fi
  fi
fi
unset __lmm_nl __lmm_r __lmm_g __lmm_h __lmm_s __lmm_q __lmm_t __lmm_p __lmm_st __lmm_x __lmm_cp __lmm_n __lmm_nc \
  __lmm_live
