#!/bin/sh
# check-source.sh [FILE...] - fails when C code finds data by searching JSON
# text instead of reading typed fields or parsing (docs/design.md, "Reads"):
#   R1  strstr/strcasestr/strnstr/memmem called with a JSON-looking needle
#       (a string literal holding \"), e.g. strstr(body, "\"preempted\":")
#   R2  a json_field-style helper (json_field, str_field, json_find, ...),
#       defined or called
#   R3  a key needle built for a search: s(n)printf of just "\"%s\":"
# Without FILEs it checks server/*.c, client/*.c and client/cli/*.c.
# --self-test feeds it files with each forbidden form (each must be
# reported) and clean ones (none may be); run from the unit suite.
# Searching non-JSON text is fine (URLs, HTTP header lines: "://", "\r\n").
# Last line: "N passed, N failed" (files checked, or self-test cases).
set -u
cd "$(dirname "$0")/.."

# check_file FILE: prints "FILE:LINE: RULE: text" per finding; status 1 if any
check_file() {
    perl -e '
        local $/; my $f = $ARGV[0];
        open(my $fh, "<", $f) or die "check-source: cannot read $f\n";
        my $src = <$fh>;
        # comments out, keeping the line breaks (line numbers stay right)
        $src =~ s{/\*(.*?)\*/}{ my $c = $1; "  " . ($c =~ tr/\n//cdr) . "  " }gse;
        $src =~ s{//[^\n]*}{}g;
        my $bad = 0;
        my $report = sub {
            my ($pos, $rule, $what) = @_;
            my $line = 1 + (substr($src, 0, $pos) =~ tr/\n//);
            $what =~ s/\s+/ /g;
            print "$f:$line: $rule: $what\n";
            $bad = 1;
        };
        my $lit = qr/"(?:[^"\\\n]|\\.)*"/;
        # needles held in variables: arrays initialised with a JSON-looking
        # literal, and buffers s(n)printf writes a JSON-looking format into
        my %needle;
        while ($src =~ /\b(\w+)\s*\[\s*\w*\s*\]\s*=\s*($lit)/g) { my ($n, $l) = ($1, $2); $needle{$n} = 1 if $l =~ /\\"/; }
        while ($src =~ /\bs?n?printf\s*\(\s*(\w+)\s*,[^;]*?($lit)/g) { my ($n, $l) = ($1, $2); $needle{$n} = 1 if $l =~ /\\"/; }
        # R1: the call up to its closing parenthesis (literals may hold parens)
        while ($src =~ /\b(strstr|strcasestr|strnstr|memmem)\s*\(((?:$lit|[^()"]|\((?:$lit|[^()"])*\))*)\)/g) {
            my ($fn, $args, $pos) = ($1, $2, $-[0]);
            my $json = 0;
            while ($args =~ /($lit)/g) { $json = 1 if $1 =~ /\\"/; }
            (my $code = $args) =~ s/$lit//g;
            while ($code =~ /\b(\w+)\b/g) { $json = 1 if $needle{$1}; }
            $report->($pos, "R1 $fn with a JSON needle", "$fn($args)") if $json;
        }
        # R2
        while ($src =~ /\b((?:json|str)_(?:field|find|value_of|get_field|lookup)\w*)\s*\(/g) {
            $report->($-[0], "R2 json_field-style helper", $1);
        }
        # R3
        while ($src =~ /\bs?n?printf\s*\([^;]*?"\\"%s\\":(?:\\")?"\s*,/g) {
            $report->($-[0], "R3 a key needle built for a search", substr($src, $-[0], $+[0] - $-[0]));
        }
        exit $bad;
    ' "$1"
}

self_test() {
    t=$(mktemp -d)
    trap 'rm -rf "$t"' EXIT
    pass=0; fail=0
    # expect FILE 0|1: clean (0) or must be reported (1)
    expect() {
        if check_file "$1" >"$t/out" 2>&1; then got=0; else got=1; fi
        if [ "$got" = "$2" ]; then
            pass=$((pass + 1)); echo "ok - $(basename "$1")"
        else
            fail=$((fail + 1)); echo "not ok - $(basename "$1") (expected $2, got $got)"; cat "$t/out"
        fi
    }
    printf '%s\n' 'int f(const char *b) { return strstr(b, "\"preempted\":") != 0; }' >"$t/r1_strstr.c"
    printf '%s\n' 'const char *g(const char *j, size_t n)' '{' \
        '    return memmem(j, n,' '                  "\"lock\":{", 8);' '}' >"$t/r1_memmem_two_lines.c"
    printf '%s\n' 'int h(const char *b) { return strcasestr(b, "\"USER_ID\"") != 0; }' >"$t/r1_strcasestr.c"
    printf '%s\n' 'static const char rel[] = "\"action\":\"released\"";' \
        'int m(const char *j, size_t n) { return memmem(j, n, rel, sizeof(rel) - 1) != 0; }' >"$t/r1_array_needle.c"
    printf '%s\n' 'int c(const char *j, size_t n, const char *cause)' '{' '    char pat[48];' \
        '    int k = snprintf(pat, sizeof(pat), "\"cause\":\"%s\"", cause);' \
        '    return memmem(j, n, pat, (size_t)k) != 0;' '}' >"$t/r1_built_needle.c"
    printf '%s\n' 'static const char *json_field(const char *j, const char *key, char *out, size_t n);' \
        >"$t/r2_json_field.c"
    printf '%s\n' 'void k(char *pat, const char *key) { snprintf(pat, 40, "\"%s\":", key); }' >"$t/r3_needle.c"
    printf '%s\n' '/* strstr(j, "\"action\":") was the old way */' \
        'int u(const char *url) { return strstr(url, "://") != 0; }' \
        'const char *v(const char *b, size_t n) { return memmem(b, n, "\r\n\r\n", 4); }' \
        'void w(struct lk_buf *b, const char *name) { lk_buf_printf(b, ",\"%s\":", name); }' \
        'int x(const char *s) { return strcmp(s, "\"quoted\""); }' >"$t/clean.c"
    for f in "$t"/r*.c; do expect "$f" 1; done
    expect "$t/clean.c" 0
    echo "$pass passed, $fail failed"
    [ "$fail" = 0 ]
}

if [ "${1:-}" = --self-test ]; then
    self_test
    exit
fi
[ $# -gt 0 ] || set -- server/*.c client/*.c client/cli/*.c
pass=0; fail=0
for f in "$@"; do
    [ -f "$f" ] || continue
    if check_file "$f"; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
done
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
