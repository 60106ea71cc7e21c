/// Exact per-position KL (and TV, and the sampled tokens' log-probabilities) from full logits
/// (SPEC §6), in one streaming pass over the two logit tensors (TV adds a second pass).
///
/// Method. With `x = a / tau`, `y = b / tau`, `delta_v = x_v - y_v` and any constant `c`,
/// `KL = E_p[d] + log E_p[e^-d]` for `d = delta - c`. Per position the pass keeps, relative to a
/// running scale `mi` (`w_v = e^(x_v - mi)`):
///
///     S = sum w            M = sum w d            (float64, exact products: every lane)
///     G = sum w k3(-d)     for lanes with |d| < 0.35 (float32 series, flushed to float64)
///       + sum e^(x - mi - d) and  E = sum w (1 - d)   for the other lanes (float64)
///
/// so that `sum w e^-d = S - M - E + G` exactly, and `KL = M/S + log1p((G - E - M)/S)`: the
/// large common terms never cancel in float32. `c` is the median of `delta` over the row's first
/// sixteen finite pairs (so a single odd token does not push every lane off the fast path), and
/// `a_v - b_v - c` is formed exactly in float64 before it is scaled and rounded, so a large logit
/// shift between the engines costs no accuracy (the KL alone uses float32 where that provably
/// suffices: `NearDifference`). Every quantity of a lane derives from the same `w` and
/// `d`, which makes the result the exact KL of distributions perturbed by a few ulps per entry.
/// Measured accuracy: see docs/exact-kl.md.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The two logit tensors, the position grid, and the optional position mask and token ids.
public struct LogitPair: @unchecked Sendable {
    public var rows: Int
    public var cols: Int
    public var vocab: Int
    /// Rollout logits `a`: `p = softmax(a / tau)`.
    public var rollout: GridView3
    /// Training logits `b`: `q = softmax(b / tau)`.
    public var train: GridView3
    /// U8/BOOL `[rows, cols]`, nonzero = the position counts; nil = all.
    public var mask: StridedView?
    /// I32/I64 `[rows, cols]`: the sampled token at each position.
    public var tokenIDs: StridedView?

    public init(rows: Int, cols: Int, vocab: Int, rollout: GridView3, train: GridView3, mask: StridedView? = nil,
                tokenIDs: StridedView? = nil) {
        self.rows = rows
        self.cols = cols
        self.vocab = vocab
        self.rollout = rollout
        self.train = train
        self.mask = mask
        self.tokenIDs = tokenIDs
    }
}

/// Float32 `[rows, cols]` outputs; each may be absent.
public struct ExactKLOutputs: @unchecked Sendable {
    public var kl: OutView<Float>
    public var tv: OutView<Float>
    public var logpRollToken: OutView<Float>
    public var logpTrainToken: OutView<Float>

    public init(kl: OutView<Float> = .absent, tv: OutView<Float> = .absent, logpRollToken: OutView<Float> = .absent,
                logpTrainToken: OutView<Float> = .absent) {
        self.kl = kl
        self.tv = tv
        self.logpRollToken = logpRollToken
        self.logpTrainToken = logpTrainToken
    }
}

let logitDTypes: [DType] = [.f32, .bf16, .f16]

func validateExactKL(_ input: LogitPair, options: LogitOptions, outputs: ExactKLOutputs) -> Status {
    var status = checkGrid(rows: input.rows, cols: input.cols, depth: input.vocab)
    if status != .ok { return status }
    if input.rows * input.cols > 0 && input.vocab < 1 { return .badSize }
    status = checkLogitOptions(options)
    if status != .ok { return status }
    return withExtentList { taken in validateExactKL(input, outputs: outputs, taken: &taken) }
}

private func validateExactKL(_ input: LogitPair, outputs: ExactKLOutputs, taken: inout ExtentList) -> Status {
    var status = Status.ok
    for view in [input.rollout, input.train] {
        status = checkView3(view, rows: input.rows, cols: input.cols, depth: input.vocab, dtypes: logitDTypes, into: &taken)
        if status != .ok { return status }
    }
    if let mask = input.mask {
        status = checkGridView(mask, rows: input.rows, cols: input.cols, dtypeOK: mask.dtype.isByteMask, into: &taken)
        if status != .ok { return status }
    }
    let wantsTokens = outputs.logpRollToken.base != nil || outputs.logpTrainToken.base != nil
    if let ids = input.tokenIDs {
        status = checkGridView(ids, rows: input.rows, cols: input.cols, dtypeOK: ids.dtype.isIndex, into: &taken)
        if status != .ok { return status }
    } else if wantsTokens {
        return .badInputs
    }
    for out in [outputs.kl, outputs.tv, outputs.logpRollToken, outputs.logpTrainToken] {
        status = checkOutput(out, Dims(outer: (input.rows, out.rowStride), inner: (input.cols, out.colStride)), taken: &taken)
        if status != .ok { return status }
    }
    // Token ids in range at every counted position: the O(n) scan, after every other check
    // (and none for an empty grid: 2^32 rows of 0 positions are no work).
    guard let ids = input.tokenIDs, input.rows * input.cols > 0 else { return .ok }
    for row in 0..<input.rows {
        for col in 0..<input.cols where positionIsValid(input.mask, row: row, col: col) {
            let id = loadIndex(ids.address(row: row, col: col), ids.dtype)
            if id < 0 || id >= input.vocab { return .badTokenID }
        }
    }
    return .ok
}

/// Validates every argument, then writes the requested outputs for every position (0 at masked
/// positions, whose logits are never read). Returns `.ok`, or the first problem found with nothing
/// written. Results are bit-identical for every `options.threads`.
public func exactKL(_ input: LogitPair, options: LogitOptions, outputs: ExactKLOutputs) -> Status {
    let status = validateExactKL(input, options: options, outputs: outputs)
    guard status == .ok else { return status }
    var kernel = ExactKLKernel(input: input, options: options, outputs: outputs)
    dispatchRows(RowKind(input.rollout), RowKind(input.train), to: &kernel)
    return .ok
}

/// Lanes whose `|d|` reaches this take the float64 path (the float32 series of `k3Ratio` holds
/// below it).
let seriesBound: Float = 0.35
/// A lane whose `x - mi` exceeds this raises the scale `mi` to its own `x` first. The largest
/// weights then have `|x - mi| <= 1`, where the float32 `x - mi` is within 6e-8 of exact: the
/// log-sum-exp (hence the token log-probabilities) is as accurate as float32 allows. New maxima
/// are rare in a vocabulary (about `ln V` of them in random order), so the float64 path they take
/// costs little.
let scaleHeadroom: Float = 1
/// Float32 series sums are flushed to float64 after this many chunks.
let flushInterval = 4

struct ExactKLKernel: PairRowConsumer {
    let input: LogitPair
    let options: LogitOptions
    let outputs: ExactKLOutputs

    mutating func run<A: VectorRow, B: VectorRow>(_ a: A.Type, _ b: B.Type) {
        let positions = input.rows * input.cols
        guard positions > 0 else { return }
        let workers = workerCount(threads: options.threads, rows: positions, positions: sizeProduct(positions, input.vocab) ?? .max)
        let input = input
        let outputs = outputs
        let inverse = options.inverseTemperature
        forEachRowBlock(rows: positions, workers: workers) { _, block in
            for position in block {
                let row = position / input.cols
                let col = position % input.cols
                guard positionIsValid(input.mask, row: row, col: col) else {
                    if outputs.kl.base != nil { outputs.kl.store(0, row: row, col: col) }
                    if outputs.tv.base != nil { outputs.tv.store(0, row: row, col: col) }
                    if outputs.logpRollToken.base != nil { outputs.logpRollToken.store(0, row: row, col: col) }
                    if outputs.logpTrainToken.base != nil { outputs.logpTrainToken.store(0, row: row, col: col) }
                    continue
                }
                let aBase = input.rollout.origin(row: row, col: col)
                let bBase = input.train.origin(row: row, col: col)
                let ra = A(aBase, stride: input.rollout.depthStride, dtype: input.rollout.dtype)
                let rb = B(bBase, stride: input.train.depthStride, dtype: input.train.dtype)
                var pass = KLPass(ra, rb, vocab: input.vocab, inverseTemperature: inverse)
                pass.run(exactDifference: outputs.tv.base != nil || outputs.logpRollToken.base != nil
                         || outputs.logpTrainToken.base != nil)
                var result = pass.finish()
                if pass.trainMassIsFarBelowScale(result) {
                    pass = KLPass(ra, rb, vocab: input.vocab, inverseTemperature: inverse)
                    pass.runFloat64()
                    result = pass.finish()
                }
                if outputs.kl.base != nil { outputs.kl.store(Float(result.kl), row: row, col: col) }
                if outputs.tv.base != nil {
                    outputs.tv.store(Float(result.valid ? pass.totalVariation(logZ: result.logZ) : .nan), row: row, col: col)
                }
                if let ids = input.tokenIDs, outputs.logpRollToken.base != nil || outputs.logpTrainToken.base != nil {
                    let id = loadIndex(ids.address(row: row, col: col), ids.dtype)
                    let x = Double(ra.scalar(id)) * Double(inverse)
                    let y = Double(rb.scalar(id)) * Double(inverse)
                    if outputs.logpRollToken.base != nil {
                        outputs.logpRollToken.store(Float(x - result.lseX), row: row, col: col)
                    }
                    if outputs.logpTrainToken.base != nil {
                        outputs.logpTrainToken.store(Float(y - result.lseY), row: row, col: col)
                    }
                }
            }
        }
    }
}

/// How the fast path forms `d = ((a - b) - c) / tau` for eight entries.
protocol ScaledDifference {
    init(ref: Double, inverse: Float)
    func callAsFunction(_ x: Lanes, _ y: Lanes) -> Lanes
}

/// Exact difference in float64, then scaled and rounded once: the only roundings are relative
/// to `d` itself, whatever the shift between the engines' logits.
struct WideDifference: ScaledDifference {
    let ref: WideLanes
    let inverse: WideLanes
    init(ref: Double, inverse: Float) {
        self.ref = WideLanes(repeating: ref)
        self.inverse = WideLanes(repeating: Double(inverse))
    }
    @inline(__always)
    func callAsFunction(_ x: Lanes, _ y: Lanes) -> Lanes {
        let wide = ((widen(x) - widen(y)) - ref) * inverse
        var result = Lanes()
        for lane in 0..<chunkWidth { result[lane] = Float(wide[lane]) }
        return result
    }
}

/// Float32: `fl(a - b) * (1/tau) - c/tau` with one fused rounding. Used when `|c / tau| < 3.5`,
/// so on fast lanes (`|d| < 0.35`) `|(a - b) / tau| < 4` and the rounding of `a - b` moves `d` by
/// at most 2.4e-7. Every quantity of the lane uses this same `d`, so the KL moves by at most
/// `2 TV * 2.4e-7`, which is below a tenth of `1e-8 + 1e-4 KL` for every KL (Pinsker:
/// `KL >= 2 TV^2`). The constant `c / tau` and `1/tau` round once for all lanes: a shift of `d`
/// (KL is invariant to it) and a temperature change below 6e-8 relative.
struct NearDifference: ScaledDifference {
    let offset: Lanes
    let inverse: Lanes
    init(ref: Double, inverse: Float) {
        offset = Lanes(repeating: Float(-ref * Double(inverse)))
        self.inverse = Lanes(repeating: inverse)
    }
    @inline(__always)
    func callAsFunction(_ x: Lanes, _ y: Lanes) -> Lanes { offset.addingProduct(x - y, inverse) }
}

/// One position: the streaming pass, its accumulators, and the TV pass.
struct KLPass<A: VectorRow, B: VectorRow> {
    let a: A
    let b: B
    let vocab: Int
    let inverse: Float
    let inverse64: Double
    /// `c`: the reference `a - b` (exact in float64).
    var ref: Double = 0
    /// The running scale: weights are `e^(x - mi)`.
    var mi: Float = 0

    var s = WideLanes()
    var m = WideLanes()
    var g = WideLanes()
    var g32 = Lanes()
    var pending = 0
    /// Sums of the lanes that took the float64 path.
    var sExtra = 0.0
    var mExtra = 0.0
    var eExtra = 0.0
    var gExtra = 0.0
    /// q-weights too large for `gExtra`, as a float64 log-sum-exp.
    var bigLog = -Double.infinity
    /// NaN or +inf logits.
    var bad = false
    /// Some p_v > 0 has q_v = 0.
    var qZero = false
    var anyP = false
    var anyQ = false

    init(_ a: A, _ b: B, vocab: Int, inverseTemperature: Float) {
        self.a = a
        self.b = b
        self.vocab = vocab
        inverse = inverseTemperature
        inverse64 = Double(inverseTemperature)
        chooseReference()
    }

    /// `c`: the median `delta` of the first sixteen finite pairs (any finite pair if none of the
    /// first sixteen is); `mi`: the largest of their scaled rollout logits.
    mutating func chooseReference() {
        // Insertion into a sorted fixed-size buffer: no allocation per position.
        var found = SIMD16<Double>()
        var count = 0
        var top = -Float.infinity
        var v = 0
        while v < vocab && count < 16 && (v < 16 || count == 0) {
            let x = a.scalar(v)
            let y = b.scalar(v)
            if x.isFinite && y.isFinite {
                let difference = Double(x) - Double(y)
                var slot = count
                while slot > 0 && found[slot - 1] > difference {
                    found[slot] = found[slot - 1]
                    slot -= 1
                }
                found[slot] = difference
                count += 1
                if x > top { top = x }
            }
            v += 1
        }
        guard count > 0 else { return }
        ref = found[count / 2]
        mi = Float(Double(top) * inverse64)
    }

    /// `exactDifference`: form `d` exactly (float64) on the fast path too. Required when TV or the
    /// token log-probabilities are wanted: they use `log Z` directly, where the float32
    /// difference's error (up to 2.4e-7, see NearDifference) is not cancelled as it is in the KL.
    mutating func run(exactDifference: Bool) {
        // The float32 difference is exact enough for the KL (see NearDifference) when the
        // reference's scaled difference leaves room below 4 for fast lanes (|d| < 0.35).
        if !exactDifference && Swift.abs(ref * inverse64) < 3.5 {
            runChunks(NearDifference(ref: ref, inverse: inverse))
        } else {
            runChunks(WideDifference(ref: ref, inverse: inverse))
        }
    }

    /// Every entry on the float64 path: for the rare position whose training mass lies far below
    /// the rollout's scale (`trainMassIsFarBelowScale`).
    mutating func runFloat64() {
        for v in 0..<vocab { slowLane(a.scalar(v), b.scalar(v)) }
    }

    /// The fast path's float32 weights `e^(x - mi)` lose bits below float32's normal range
    /// (e^-87). When the rollout side sets the scale and the training side's whole mass sits more
    /// than e^-40 below it (a rollout logit far above every training logit, where the training
    /// logit is -inf or much lower), the training weights that matter are the ones that lost bits
    /// (or flushed to 0), so the position is recomputed in float64. Below e^-40 the subnormal
    /// weights can shift the training mass by at most V e^-47 relative.
    func trainMassIsFarBelowScale(_ result: Result) -> Bool {
        result.lseY - (Double(mi) - ref * inverse64) < -40
    }

    mutating func runChunks<D: ScaledDifference>(_ difference: D) {
        let inv = Lanes(repeating: inverse)
        let bound = Lanes(repeating: seriesBound)
        let headroom = Lanes(repeating: scaleHeadroom)
        var v = 0
        while v &+ chunkWidth <= vocab {
            // A run of fast chunks with the sums in registers.
            let negativeScale = Lanes(repeating: -mi)
            var ls = s, lm = m, lg = g, lg32 = g32, lpending = pending
            let start = v
            while v &+ chunkWidth <= vocab {
                let x = a.chunk(v)
                let y = b.chunk(v)
                let t = negativeScale.addingProduct(x, inv)
                let d = difference(x, y)
                if anySet(~(laneMask(t .<= headroom) & laneMask(absolute(d) .< bound))) { break }
                let w = fastExp(t)
                let z = -d
                lg32 = lg32.addingProduct(w * (z * z), k3Ratio(z))
                let wide = widen(w)
                ls += wide
                lm = lm.addingProduct(wide, widen(d))
                lpending &+= 1
                if lpending == flushInterval {
                    lg += widen(lg32)
                    lg32 = Lanes()
                    lpending = 0
                }
                v &+= chunkWidth
            }
            s = ls
            m = lm
            g = lg
            g32 = lg32
            pending = lpending
            if v > start {
                anyP = true
                anyQ = true
            }
            if v &+ chunkWidth <= vocab {
                for lane in 0..<chunkWidth { slowLane(a.scalar(v &+ lane), b.scalar(v &+ lane)) }
                v &+= chunkWidth
            }
        }
        while v < vocab {
            slowLane(a.scalar(v), b.scalar(v))
            v &+= 1
        }
        flush()
    }

    @inline(__always)
    mutating func flush() {
        g += widen(g32)
        g32 = Lanes()
        pending = 0
    }

    /// One vocabulary entry in float64: every special case (infinities, NaN, a new scale, lanes
    /// outside the series range).
    mutating func slowLane(_ x: Float, _ y: Float) {
        if x.isNaN || y.isNaN || x == .infinity || y == .infinity {
            bad = true
            return
        }
        if x == -.infinity {
            // p_v = 0: only q's mass, e^(y - mi + c) on the weights' scale.
            if y == -.infinity { return }
            anyQ = true
            addQWeight((Double(y) + ref) * inverse64 - Double(mi))
            return
        }
        anyP = true
        let scaled = Double(x) * inverse64
        if scaled - Double(mi) > Double(scaleHeadroom) { rescale(to: Float(scaled)) }
        let t = scaled - Double(mi)
        let w = exp(t)
        sExtra += w
        if y == -.infinity {
            // q_v = 0 < p_v: KL is +inf; the lane adds nothing to sum w e^-d.
            qZero = true
            eExtra += w
            return
        }
        anyQ = true
        let d = ((Double(x) - Double(y)) - ref) * inverse64
        mExtra += w * d
        eExtra += w.addingProduct(-w, d)  // w (1 - d) with one rounding
        addQWeight(t - d)
    }

    @inline(__always)
    mutating func addQWeight(_ u: Double) {
        if u <= 80 {
            gExtra += exp(u)
        } else {
            bigLog = logAddExp(bigLog, u)
        }
    }

    /// Moves the scale up to `newScale`: every sum is multiplied by `e^(mi - newScale)`.
    mutating func rescale(to newScale: Float) {
        flush()
        let shift = Double(mi) - Double(newScale)
        let factor = exp(shift)
        s *= factor
        m *= factor
        g *= factor
        sExtra *= factor
        mExtra *= factor
        eExtra *= factor
        gExtra *= factor
        bigLog += shift
        mi = newScale
    }

    struct Result {
        var kl: Double
        /// `log E_p[e^-d]`, for TV.
        var logZ: Double
        /// Log-sum-exp of each side: NaN when that side has no distribution.
        var lseX: Double
        var lseY: Double
        /// Both distributions exist and no logit is NaN or +inf.
        var valid: Bool
    }

    func finish() -> Result {
        let total = treeSum(s) + sExtra
        let hasP = !bad && anyP && total > 0
        let hasQ = !bad && anyQ
        let mean = treeSum(m) + mExtra
        let excess = (treeSum(g) + gExtra) - eExtra - mean  // sum w e^-d - S
        let lseX = hasP ? Double(mi) + log(total) : .nan
        var logZ = Double.nan
        var lseY = Double.nan
        if hasQ {
            if hasP && bigLog == -.infinity && excess > -0.5 * total {
                // Z >= 1/2: Z - 1 = excess / S without forming the large common parts.
                logZ = log1p(excess / total)
                lseY = lseX - ref * inverse64 + logZ
            } else {
                // sum w e^-d directly (fast lanes: w (1 - d + k3) with |d| < 0.35, no
                // cancellation), so a small Z keeps its relative accuracy.
                let direct = treeSum(s) - treeSum(m) + treeSum(g) + gExtra
                let logSum = logAddExp(direct > 0 ? log(direct) : -.infinity, bigLog)
                lseY = Double(mi) - ref * inverse64 + logSum
                if hasP { logZ = logSum - log(total) }
            }
        }
        guard hasP && hasQ else { return Result(kl: .nan, logZ: .nan, lseX: lseX, lseY: lseY, valid: false) }
        var kl = mean / total + logZ
        if qZero || logZ == -.infinity {
            kl = .infinity
        } else if kl < 0 {
            kl = 0  // rounding below the true KL >= 0
        }
        return Result(kl: kl, logZ: logZ, lseX: lseX, lseY: lseY, valid: true)
    }

    /// `(1/2) sum |p_v - q_v|`, a second pass: `|p_v - q_v| = p_v |expm1(-(d_v + log Z))|`.
    func totalVariation(logZ: Double) -> Double {
        let total = treeSum(s) + sExtra
        let lHi = Float(logZ)
        let lLo = Float(logZ - Double(lHi))
        let inv = Lanes(repeating: inverse)
        // Always the exact difference here: TV adds |p - q| term by term, so an error in d is not
        // cancelled by the normalisation as it is in the KL.
        let difference = WideDifference(ref: ref, inverse: inverse)
        let bound = Lanes(repeating: seriesBound)
        var sum = WideLanes()
        var extra = 0.0
        var v = 0
        while v &+ chunkWidth <= vocab {
            let x = a.chunk(v)
            let y = b.chunk(v)
            let t = Lanes(repeating: -mi).addingProduct(x, inv)
            let d = difference(x, y)
            let z = -((d + Lanes(repeating: lHi)) + Lanes(repeating: lLo))
            if !anySet(~(laneMask(absolute(d) .< bound) & laneMask(absolute(z) .< bound))) {
                let w = fastExp(t)
                let expm1 = z.addingProduct(z * z, k3Ratio(z))
                sum += widen(w * absolute(expm1))
            } else {
                for lane in 0..<chunkWidth { extra += tvLane(a.scalar(v &+ lane), b.scalar(v &+ lane), logZ: logZ) }
            }
            v &+= chunkWidth
        }
        while v < vocab {
            extra += tvLane(a.scalar(v), b.scalar(v), logZ: logZ)
            v &+= 1
        }
        return 0.5 * (treeSum(sum) + extra) / total
    }

    /// `|p_v - q_v|` of one entry on the weights' scale, in float64.
    func tvLane(_ x: Float, _ y: Float, logZ: Double) -> Double {
        if x == -.infinity {
            return y == -.infinity ? 0 : exp((Double(y) + ref) * inverse64 - Double(mi) - logZ)
        }
        let t = Double(x) * inverse64 - Double(mi)
        let w = exp(t)
        if y == -.infinity { return w }
        let z = -(((Double(x) - Double(y)) - ref) * inverse64 + logZ)
        return Swift.abs(z) < Double(seriesBound) ? w * Swift.abs(expm1(z)) : Swift.abs(exp(t + z) - w)
    }
}
