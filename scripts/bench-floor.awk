# bench-floor.awk - the "floor" of a lock transition, for scripts/bench.sh:
# from a MONITOR capture of one HTTP acquire and one release of device
# bench-floor, a Functions library whose one function, floor_cycle, runs
# exactly the Redis commands those two calls ran, with the same arguments, and
# nothing else: no walk, no checks, no JSON built (the texts are the ones
# captured). What is left is what the data model itself costs per transition:
# the script rate no logic of ours can beat.
#
#   awk -v out=DIR -v acquire_reply=N -v release_reply=N [-v devices=16] \
#       -f scripts/bench-floor.awk monitor.txt
#
# writes DIR/floor.lua (the library) and DIR/args (the acquire FCALL's numkeys,
# keys and arguments as captured, one per line, for redis-benchmark: an
# argument with an escape is replaced by as many x), and prints how many
# commands each call ran. floor_cycle's odd calls run the acquire's commands,
# its even calls the release's, on device bench-floor-K, K = (call - 1) / 2
# modulo devices: driven by redis-benchmark with as many clients, each device
# is acquired and released in turn, as lockbench's cycle does. Each call
# answers as many bytes as the real one did (N: the length of each reply's
# body). Every key's dl: becomes fl:, so no broker reads what the floor writes.
#
# MONITOR quotes each argument as Redis's sdscatrepr does: \" \\ \n \r \t
# \a \b, which Lua reads alike, and \xHH, which Lua 5.1 writes \ddd.

# the quoted arguments of a MONITOR line, from its first '"', into tok[1..n]
function tokens(line,    i, c, n, s, inq) {
    n = 0
    inq = 0
    for (i = index(line, "\""); i <= length(line); i++) {
        c = substr(line, i, 1)
        if (!inq) {
            if (c == "\"") { inq = 1; s = "" }
            continue
        }
        if (c == "\\") { s = s c substr(line, i + 1, 1); i++; continue }
        if (c == "\"") { tok[++n] = s; inq = 0; continue }
        s = s c
    }
    return n
}

function hexval(h,    v, i) {
    v = 0
    for (i = 1; i <= 2; i++) v = v * 16 + index("0123456789abcdef", tolower(substr(h, i, 1))) - 1
    return v
}

# one argument as a Lua expression: its text, the device as d, keys in fl:
function lua_arg(s,    out, i, c, k) {
    out = ""
    for (i = 1; i <= length(s); i++) {
        c = substr(s, i, 1)
        if (c == "\\" && substr(s, i + 1, 1) == "x") {
            out = out sprintf("\\%03d", hexval(substr(s, i + 2, 2)))
            i += 3
        } else if (c == "\\") {
            out = out c substr(s, i + 1, 1)
            i++
        } else {
            out = out c
        }
    }
    if (substr(out, 1, 3) == "dl:") out = "fl:" substr(out, 4)
    k = out
    out = ""
    while ((i = index(k, "bench-floor")) > 0) {
        out = out substr(k, 1, i - 1) "\" .. d .. \""
        k = substr(k, i + 11)
    }
    return "\"" out k "\""
}

# one FCALL argument for redis-benchmark's command line
function plain_arg(s,    x) {
    if (index(s, "\\") == 0) return s
    x = s
    gsub(/./, "x", x)
    return x
}

/"FCALL" "dl_[0-9a-f]*_(acquire|release)"/ && !/\[0 lua\]/ {
    n = tokens($0)
    cur = tok[2]
    sub(/^dl_[0-9a-f]*_/, "", cur)
    # a call answered NEEDKEYS is sent again: the last one is the call that ran
    code[cur] = ""
    ncmd[cur] = 0
    args[cur] = ""
    for (j = 3; j <= n; j++) args[cur] = args[cur] plain_arg(tok[j]) "\n"
    next
}
/\[0 lua\]/ {
    if (cur == "") next
    n = tokens($0)
    call = "    redis.call("
    for (j = 1; j <= n; j++) call = call (j > 1 ? ", " : "") lua_arg(tok[j])
    code[cur] = code[cur] "    " call ")\n"
    ncmd[cur]++
    next
}
{ cur = "" }

END {
    if (!ncmd["acquire"] || !ncmd["release"]) {
        print "bench-floor.awk: the capture has no acquire or no release" > "/dev/stderr"
        exit 1
    }
    lib = out "/floor.lua"
    print "#!lua name=devlock_bench_floor" > lib
    print "-- made by scripts/bench-floor.awk from a MONITOR capture: see there" > lib
    print "redis.register_function{function_name = 'floor_cycle', flags = {}, callback = function(KEYS, ARGV)" > lib
    print "    local n = redis.call('INCR', 'fl:floor:n')" > lib
    print "    local d = 'bench-floor-' .. (math.floor((n - 1) / 2) % " (devices ? devices : 16) ")" > lib
    print "    if n % 2 == 1 then" > lib
    printf "%s", code["acquire"] > lib
    print "        return {1, string.rep('x', " acquire_reply + 0 "), 0}" > lib
    print "    end" > lib
    printf "%s", code["release"] > lib
    print "    return {1, string.rep('x', " release_reply + 0 "), 0}" > lib
    print "end}" > lib
    printf "%s", args["acquire"] > (out "/args")
    print ncmd["acquire"] " commands in the acquire, " ncmd["release"] " in the release"
}
