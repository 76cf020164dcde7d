# stack_chain.awk - the deepest call chain of the core's public functions, from gcc's
# -fcallgraph-info=su output (build/dlb_cg.ci): each function's frame (bytes) plus the deepest chain of
# its callees. Library callees (memcpy, memset) count 0: their frames are the C library's. Fails (exit 1)
# when a chain reaches LIMIT bytes, the bound dlb.h promises. No recursion in the core: a cycle fails too.
#   awk -v LIMIT=512 -f tests/stack_chain.awk build/dlb_cg.ci
function short(t) { sub(/.*:/, "", t); return t }
function deepest(f,    i, d, best, bestpath) {
    if (f in done) return depth[f]
    if (f in busy) { print "STACK CHECK FAILED: recursion through " short(f); bad = 1; return 0 }
    busy[f] = 1
    best = 0; bestpath = ""
    for (i = 1; i <= ncalls[f]; i++) {
        d = deepest(callee[f, i])
        if (d > best) { best = d; bestpath = chain[callee[f, i]] }
    }
    delete busy[f]
    depth[f] = frame[f] + best
    chain[f] = short(f) " " frame[f] (bestpath != "" ? " + " bestpath : "")
    done[f] = 1
    return depth[f]
}
/^node:/ {
    match($0, /title: "[^"]*"/); t = substr($0, RSTART + 8, RLENGTH - 9)
    frame[t] = 0
    if (match($0, /[0-9]+ bytes/)) frame[t] = substr($0, RSTART, RLENGTH - 6) + 0
}
/^edge:/ {
    match($0, /sourcename: "[^"]*"/); s = substr($0, RSTART + 13, RLENGTH - 14)
    match($0, /targetname: "[^"]*"/); d = substr($0, RSTART + 13, RLENGTH - 14)
    if (!((s, d) in seen)) { seen[s, d] = 1; callee[s, ++ncalls[s]] = d }
}
END {
    worst = 0
    for (t in frame) {
        if (short(t) !~ /^dlb_/) continue
        n = deepest(t)
        printf "    %-22s %4d bytes: %s\n", short(t), n, chain[t]
        if (n > worst) { worst = n; worst_chain = chain[t] }
    }
    printf "deepest call chain of a public function: %d bytes (%s); bound %d\n", worst, worst_chain, LIMIT
    if (worst >= LIMIT) { print "STACK CHECK FAILED: the chain reaches the bound in dlb.h"; bad = 1 }
    exit bad
}
