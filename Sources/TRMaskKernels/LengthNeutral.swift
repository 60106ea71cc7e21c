/// LN-TRM (SPEC §4.4): the row statistic `W / Z(T)` with `W = sum_t w_t tv_t`, `Z(T) = sum_t w_t`
/// over the row's counted tokens `t = 1..T`. The weights depend on `T`, known only after the
/// first pass, so the statistic takes a second pass over the row (still in cache). The weights are
/// 1 except on the last `~2 / kl_max` tokens: chunks before that tail add their `tv` in float64
/// lanes; tail tokens are weighted one at a time.

/// `w_t` for a token with `remaining = T - t` counted tokens after it, with the reference's
/// operations in the reference's order (so the weights are the same float64 numbers).
@inline(__always)
func positionWeight(remaining: Int, klMax: Double, eps: Double) -> Double {
    let r = Double(remaining)
    let w = Swift.min(1, (r * klMax / 2).squareRoot())
    return eps > 0 && eps < .infinity ? Swift.min(w, r * eps) : w  // eps 0 or +inf: none
}

/// `Z(T)`, and the smallest `remaining` whose weight is 1 (`T` when none is): weights grow with
/// `remaining`, so every token with at least that many after it has weight 1.
func positionWeightTotal(tokens: Int, klMax: Double, eps: Double) -> (total: Double, fullFrom: Int) {
    var total = 0.0
    var remaining = 0
    while remaining < tokens {
        let w = positionWeight(remaining: remaining, klMax: klMax, eps: eps)
        if w >= 1 { break }
        total += w
        remaining += 1
    }
    return (total + Double(tokens - remaining), remaining)
}

/// The LN-TRM statistic of one row with `tokens` counted tokens (> 0, no NaN under the reject
/// policy) among its first `n` positions; 0 when `Z(T) = 0`. A token of weight 0 adds nothing,
/// even when its `tv` is infinite.
func lengthNeutralStatistic<Reader: RowReader>(_ source: Reader, scanned n: Int, tokens: Int, criterion: Criterion,
                                               plan: ScanPlan) -> Float {
    let (z, fullFrom) = positionWeightTotal(tokens: tokens, klMax: criterion.klMax, eps: criterion.eps)
    if z == 0 { return 0 }
    var head = WideLanes()
    var tail = 0.0
    var t = 0  // counted tokens before the chunk
    var p = 0
    while p < n {
        let width = Swift.min(chunkWidth, n - p)
        let (raw, valid) = width == chunkWidth ? source.chunk(at: p) : source.partialChunk(at: p, count: width)
        let terms = ChunkTerms(raw: raw, valid: valid, plan: plan)
        let tv = masked(exponentialEstimates(terms.d).tv, terms.counted)
        if tokens - (t + width) >= fullFrom {
            // Every counted token here has at least `fullFrom` after it: weight 1.
            head += widen(tv)
            t += laneCount(terms.counted)
        } else {
            for lane in 0..<width where terms.counted[lane] != 0 {
                t += 1
                let w = positionWeight(remaining: tokens - t, klMax: criterion.klMax, eps: criterion.eps)
                if w > 0 { tail += w * Double(tv[lane]) }
            }
        }
        p += width
    }
    return Float((treeSum(head) + tail) / z)
}
