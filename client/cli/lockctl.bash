# bash completion for lockctl(1) - commands, options, --type values and
# signal names. Installed as /usr/share/bash-completion/completions/lockctl;
# to try it: . client/cli/lockctl.bash
# Keep in step with the option table in client/cli/lockctl.c.

# 0 if option $1 takes a value (the next word)
_lockctl_valued()
{
    case $1 in
    --url | --token | --user | --call-timeout | --cacert | --capath | --cert | --cert-key | \
    --safety-margin | --type | --timeout | --reason | --plan | --wait | --key | --since | --limit | \
    --device | --count | --request-id | --signal | --kill-after | --preempt-signal | --name | \
    --from | --to | --state)
        return 0 ;;
    esac
    return 1
}

_lockctl()
{
    local cur=${COMP_WORDS[COMP_CWORD]} prev=
    ((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
    # --opt=VALUE: bash splits at '=' (COMP_WORDBREAKS)
    if [[ $cur == = ]]; then
        cur=
    elif [[ $prev == = ]] && ((COMP_CWORD > 1)); then
        prev=${COMP_WORDS[COMP_CWORD - 2]}
    fi
    if [[ ${COMP_WORDS[COMP_CWORD]} == = ]]; then
        prev=${COMP_WORDS[COMP_CWORD - 1]}
    fi

    local commands="acquire release force-release renew status watch run history health
                    book bookings cancel move"
    local global="--url --token --user --json --call-timeout --cacert --capath --cert --cert-key
                  --safety-margin --version --help"
    local types="MAINTENANCE QUEUE_EXECUTING MANUAL_OPERATOR QUEUE_QUEUED"
    local states="booked waiting active ended cancelled bumped"
    local times="now +30m +1h +2h +1d -1h"
    local signals="TERM INT HUP KILL USR1 USR2 QUIT ALRM CONT STOP TSTP WINCH PIPE ABRT SEGV
                   SIGTERM SIGINT SIGHUP SIGKILL SIGUSR1 SIGUSR2 SIGQUIT SIGALRM SIGCONT SIGSTOP"

    # the command, and for run where "--" is
    local i w cmd= dd=0
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        if [[ $w == = ]]; then
            ((i++))
            continue
        fi
        if [[ -z $cmd ]]; then
            if [[ $w == -* ]]; then
                _lockctl_valued "$w" && [[ ${COMP_WORDS[i + 1]} != = ]] && ((i++))
                continue
            fi
            cmd=$w
        elif [[ $w == -- && $cmd == run ]]; then
            dd=$i
            break
        fi
    done
    if ((dd)); then
        # run ... -- CMD ARGS: a command, then files
        if ((COMP_CWORD == dd + 1)); then
            COMPREPLY=($(compgen -c -- "$cur"))
        else
            COMPREPLY=($(compgen -f -- "$cur"))
        fi
        return 0
    fi

    case $prev in
    --type)
        COMPREPLY=($(compgen -W "$types" -- "${cur^^}"))
        return 0 ;;
    --signal | --preempt-signal)
        COMPREPLY=($(compgen -W "$signals" -- "${cur^^}"))
        return 0 ;;
    --timeout)
        COMPREPLY=($(compgen -W "none" -- "$cur"))
        return 0 ;;
    --cacert | --cert | --cert-key)
        COMPREPLY=($(compgen -f -- "$cur"))
        return 0 ;;
    --capath)
        COMPREPLY=($(compgen -d -- "$cur"))
        return 0 ;;
    --url)
        COMPREPLY=($(compgen -W "http:// https://" -- "$cur"))
        return 0 ;;
    --state)
        # a comma-separated list: complete the word after the last comma
        local done_part=
        [[ $cur == *,* ]] && done_part=${cur%,*},
        COMPREPLY=($(compgen -P "$done_part" -W "$states" -- "${cur##*,}"))
        return 0 ;;
    --from | --to)
        COMPREPLY=($(compgen -W "$times" -- "$cur"))
        return 0 ;;
    --token | --user | --call-timeout | --safety-margin | --reason | --plan | --wait | --key | \
    --since | --limit | --device | --count | --request-id | --kill-after | --name)
        return 0 ;;
    esac

    if [[ -z $cmd ]]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "$global" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$commands" -- "$cur"))
        fi
        return 0
    fi
    local opts=
    case $cmd in
    acquire) opts="--type --timeout --reason --plan --wait --request-id --name" ;;
    release) opts="--key" ;;
    force-release) opts="--reason" ;;
    renew) opts="--key --timeout" ;;
    watch) opts="--count --device --exit-on-error" ;;
    run) opts="--type --timeout --reason --plan --wait --request-id --name --signal --kill-after
               --preempt-signal --" ;;
    history) opts="--since --limit --device --plan" ;;
    book) opts="--from --to --type --reason --plan --request-id" ;;
    bookings) opts="--device --user --from --to --state --limit" ;;
    move) opts="--from --to" ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts $global" -- "$cur"))
    fi
    return 0
}
complete -F _lockctl lockctl
