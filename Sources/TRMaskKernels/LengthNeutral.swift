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
    var (head, t, p) = headSums(source, scanned: n, headEnd: tokens - fullFrom, plan: plan)
    // The tail: each counted token with its weight, in float64 lanes by position.
    var tail = WideLanes()
    while p < n && t < tokens {
        let width = Swift.min(chunkWidth, n - p)
        let (raw, valid) = width == chunkWidth ? source.chunk(at: p) : source.partialChunk(at: p, count: width)
        let terms = ChunkTerms(raw, valid: valid, plan: plan)
        p += width
        guard anySet(terms.counted) else { continue }
        let tv = widen(exponentialEstimates(terms.d).tv)
        if terms.counted == LaneMask(repeating: ~0) {
            // Remaining tokens after lane j: tokens - t - 1 - j.
            let remaining = SIMD8<Double>(repeating: Double(tokens - t - 1)) - SIMD8<Double>(0, 1, 2, 3, 4, 5, 6, 7)
            let w = positionWeights(remaining: remaining, klMax: criterion.klMax, eps: criterion.eps)
            tail += (w * tv).replacing(with: 0, where: w .<= 0)  // weight 0 adds nothing, even to +inf
            t += chunkWidth
        } else {
            for lane in 0..<width where terms.counted[lane] != 0 {
                t += 1
                let w = positionWeight(remaining: tokens - t, klMax: criterion.klMax, eps: criterion.eps)
                if w > 0 { tail[lane] += w * tv[lane] }
            }
        }
    }
    return Float((treeSum(head) + treeSum(tail)) / z)
}

/// `positionWeight` on eight lanes (the same operations, so the same numbers).
@inline(__always)
func positionWeights(remaining r: SIMD8<Double>, klMax: Double, eps: Double) -> SIMD8<Double> {
    let root = (r * klMax / 2).squareRoot()
    var w = root.replacing(with: 1, where: root .> 1)
    if eps > 0 && eps < .infinity {
        let linear = r * eps
        w = w.replacing(with: linear, where: linear .< w)
    }
    return w
}

/// The float64 lane sums of `tv` over whole groups of chunks whose counted tokens all come
/// before `headEnd` (weight 1), with the counted tokens and the position where it stopped. Each
/// group adds its eight chunks in float32 first, as the row scan does (SPEC §3 accuracy). A
/// function of its own with the accumulators by value, so they stay in registers.
@inline(never)
func headSums<Reader: RowReader>(_ source: Reader, scanned n: Int, headEnd: Int, plan: ScanPlan)
    -> (sums: WideLanes, counted: Int, position: Int) {
    var sums = WideLanes()
    var t = 0
    var p = 0
    // A group adds at most `GroupSums.width` tokens.
    while p + GroupSums.width <= n && t + GroupSums.width <= headEnd {
        var group = Lanes()
        var counted = Lanes()
        for _ in 0..<GroupSums.chunks {
            let (raw, valid) = source.chunk(at: p)
            let terms = ChunkTerms(raw, valid: valid, plan: plan)
            group += exponentialEstimates(terms.d).tv  // 0 where d is masked out
            counted += ones(terms.counted)
            p &+= chunkWidth
        }
        sums += widen(group)
        t &+= Int(counted.sum())
    }
    return (sums, t, p)
}
