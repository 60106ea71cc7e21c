/// Lower bound on the per-position KL when the rollout engine returns only its top-k
/// log-probabilities (vLLM `logprobs=k`) and the training side has full logits (SPEC §6).

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The rollout's top-k log-probabilities and token ids, and the training logits.
public struct TopKInputs: @unchecked Sendable {
    public var rows: Int
    public var cols: Int
    public var vocab: Int
    public var k: Int
    /// F32/BF16/F16/F64 `[rows, cols, k]`: `log pi_roll` of each listed token (already at the
    /// rollout's temperature).
    public var logprobs: GridView3
    /// I32/I64 `[rows, cols, k]`: distinct token ids in `0 ..< vocab` per position.
    public var ids: GridView3
    /// Training logits `[rows, cols, vocab]`: `q = softmax(b / tau)`.
    public var train: GridView3
    public var mask: StridedView?

    public init(rows: Int, cols: Int, vocab: Int, k: Int, logprobs: GridView3, ids: GridView3, train: GridView3,
                mask: StridedView? = nil) {
        self.rows = rows
        self.cols = cols
        self.vocab = vocab
        self.k = k
        self.logprobs = logprobs
        self.ids = ids
        self.train = train
        self.mask = mask
    }
}

func validateTopK(_ input: TopKInputs, options: LogitOptions, out: OutView<Float>) -> Status {
    var status = checkGrid(rows: input.rows, cols: input.cols, depth: input.vocab)
    if status != .ok { return status }
    status = checkGrid(rows: input.rows, cols: input.cols, depth: input.k)
    if status != .ok { return status }
    if input.rows * input.cols > 0 && input.vocab < 1 { return .badSize }
    status = checkLogitOptions(options)
    if status != .ok { return status }
    guard out.base != nil || input.rows * input.cols == 0 else { return .nullPointer }
    // The distinctness check sorts one position's k ids in scratch memory.
    if input.k > 1 && input.rows * input.cols > 0 && scratchBytes(input.k, of: Int.self) == nil { return .tooLarge }
    return withExtentList { taken in validateTopK(input, out: out, taken: &taken) }
}

private func validateTopK(_ input: TopKInputs, out: OutView<Float>, taken: inout ExtentList) -> Status {
    var status = Status.ok
    for check in [
        checkView3(input.logprobs, rows: input.rows, cols: input.cols, depth: input.k, dtypes: [.f32, .bf16, .f16, .f64], into: &taken),
        checkView3(input.ids, rows: input.rows, cols: input.cols, depth: input.k, dtypes: [.i32, .i64], into: &taken),
        checkView3(input.train, rows: input.rows, cols: input.cols, depth: input.vocab, dtypes: logitDTypes, into: &taken),
    ] where check != .ok {
        return check
    }
    if let mask = input.mask {
        status = checkGridView(mask, rows: input.rows, cols: input.cols, dtypeOK: mask.dtype.isByteMask, into: &taken)
        if status != .ok { return status }
    }
    status = checkOutput(out, Dims(outer: (input.rows, out.rowStride), inner: (input.cols, out.colStride)), taken: &taken)
    if status != .ok || input.k == 0 || input.rows * input.cols == 0 { return status }  // k = 0: no ids to read
    // Ids in range and distinct at every counted position: the O(n) scan, after every other check.
    guard let scratch = malloc(input.k &* MemoryLayout<Int>.stride) else { return .tooLarge }  // bounded above
    defer { free(scratch) }
    var sorted = UnsafeMutableBufferPointer(start: scratch.bindMemory(to: Int.self, capacity: input.k), count: input.k)
    for row in 0..<input.rows {
        for col in 0..<input.cols where positionIsValid(input.mask, row: row, col: col) {
            let origin = input.ids.origin(row: row, col: col)
            for j in 0..<input.k {
                let id = loadIndex(origin + j &* input.ids.depthStride &* input.ids.dtype.size, input.ids.dtype)
                if id < 0 || id >= input.vocab { return .badTokenID }
                sorted[j] = id
            }
            sorted.sort()
            for j in sorted.indices.dropFirst() where sorted[j] == sorted[j - 1] { return .badTokenID }
        }
    }
    return .ok
}

/// Validates, then writes `KL_lb = sum_k p_k log(p_k / q_k) + (1 - P) log((1 - P) / (1 - Q))` for
/// every position (0 where masked). Computed without cancellation as
/// `sum_{p_k > 0} p_k k3(log q_k - log p_k) + sum_{p_k = 0} q_k + (1 - P) (r - log1p r)` with
/// `r = (P - Q) / (1 - P)`; when `1 - P <= 1e-12` the remainder term is dropped (the float64
/// reference drops it for `P >= 1`), and `1 - Q` is at least its float64 resolution, `1e-14 (k + 2)`.
public func topKKLLowerBound(_ input: TopKInputs, options: LogitOptions, out: OutView<Float>) -> Status {
    let status = validateTopK(input, options: options, out: out)
    guard status == .ok else { return status }
    var kernel = TopKKernel(input: input, options: options, out: out)
    dispatchRow(RowKind(input.train), to: &kernel)
    return .ok
}

struct TopKKernel: SingleRowConsumer {
    let input: TopKInputs
    let options: LogitOptions
    let out: OutView<Float>

    mutating func run<R: VectorRow>(_ r: R.Type) {
        let positions = input.rows * input.cols
        guard positions > 0 else { return }
        let workers = workerCount(threads: options.threads, rows: positions, positions: sizeProduct(positions, input.vocab) ?? .max)
        let input = input
        let out = out
        // Exact 1/tau in float64 (not the float32 of the KL pass): the rollout's log-probs were
        // computed at tau, and 1 - Q must match them far below float32 resolution.
        let inverse = 1 / options.temperature
        forEachRowBlock(rows: positions, workers: workers) { _, block in
            for position in block {
                let row = position / input.cols
                let col = position % input.cols
                guard positionIsValid(input.mask, row: row, col: col) else {
                    out.store(0, row: row, col: col)
                    continue
                }
                let train = R(input.train.origin(row: row, col: col), stride: input.train.depthStride, dtype: input.train.dtype)
                let lse = logSumExp(train, vocab: input.vocab, inverse: inverse)
                out.store(Float(bound(row: row, col: col, train: train, lse: lse, inverse: inverse)), row: row, col: col)
            }
        }
    }

    func bound<R: VectorRow>(row: Int, col: Int, train: R, lse: Double, inverse: Double) -> Double {
        guard !lse.isNaN else { return .nan }
        // No listed token: P = 0, the bound is KL(1 || 1) = 0 (and the k-arrays, empty, may be NULL).
        guard input.k > 0 else { return 0 }
        let lpOrigin = input.logprobs.origin(row: row, col: col)
        let idOrigin = input.ids.origin(row: row, col: col)
        var h3 = 0.0     // sum_{p>0} p k3(log q - log p)
        var pq = 0.0     // sum_{p>0} (p - q)
        var q0 = 0.0     // sum_{p=0} q
        var mass = 0.0   // P
        var infinite = false
        for j in 0..<input.k {
            let lp = loadDouble(lpOrigin + j &* input.logprobs.depthStride &* input.logprobs.dtype.size, input.logprobs.dtype)
            let id = loadIndex(idOrigin + j &* input.ids.depthStride &* input.ids.dtype.size, input.ids.dtype)
            let lq = Double(train.scalar(id)) * inverse - lse
            if lp.isNaN || lq.isNaN { return .nan }
            let p = exp(lp)
            if p == 0 {
                q0 += exp(lq)
                continue
            }
            mass += p
            if lq == -.infinity {
                infinite = true
                continue
            }
            let x = lq - lp
            let em1 = expm1(x)
            h3 += p * (em1 - x)
            pq -= p * em1
        }
        if infinite { return .infinity }
        // A remainder at the rounding level of P (1e-12 covers k up to 2^40 rounded terms) is
        // not resolvable: it is dropped, as P >= 1 is; the term it could add is below 1e-9
        // unless 1 - Q is exactly 0.
        let rest = 1 - mass
        guard rest > remainderFloor else { return h3 + pq }
        // 1 - Q = (1 - P) + (P - Q). Below the float64 resolution of Q (about 1e-14 per listed
        // token, from the log-sum-exp and the products by 1/tau) it is noise: it is taken at that
        // resolution, so rounding cannot turn a finite bound into +inf (the value then moves by
        // less than the resolution).
        let resolution = 1e-14 * Double(input.k + 2)
        let restQ = Swift.max(rest + (pq - q0), resolution)
        let r = (restQ - rest) / rest
        let tail = Swift.abs(r) < 1e-4 ? r * r * (0.5 - r * (1.0 / 3 - r * 0.25)) : r - log1p(r)
        return h3 + q0 + rest * tail
    }
}

/// The smallest remainder `1 - P` the bound keeps.
let remainderFloor = 1e-12

/// `log sum_v e^(b_v / tau)` of one position, in float64 throughout (NaN when a logit is NaN or
/// +inf, or every logit is -inf): a max pass, then a pass of float64 SIMD exponentials. Float64
/// and not the float32 weights of the KL pass: the bound's remainder `1 - Q` can be far smaller
/// than float32's 6e-8 relative rounding of the largest weight, and the float64 reference
/// resolves it.
func logSumExp<R: VectorRow>(_ row: R, vocab: Int, inverse: Double) -> Double {
    var top = Lanes(repeating: -.infinity)
    var special = Lanes()  // nonzero where a logit was NaN or +inf
    let infinity = Lanes(repeating: .infinity)
    var v = 0
    while v &+ chunkWidth <= vocab {
        let y = row.chunk(v)
        special = select(laneMask(y .!= y) | laneMask(y .== infinity), Lanes(repeating: 1), special)
        top = top.replacing(with: y, where: y .> top)
        v &+= chunkWidth
    }
    var largest = top.max()
    for tail in v..<vocab {
        let y = row.scalar(tail)
        if y.isNaN || y == .infinity { return .nan }
        if y > largest { largest = y }
    }
    guard special.max() == 0, largest > -.infinity else { return .nan }
    let shift = Double(largest) * inverse
    let scale = WideLanes(repeating: inverse)
    let offset = WideLanes(repeating: -shift)
    var sums = WideLanes()
    v = 0
    while v &+ chunkWidth <= vocab {
        sums += fastExp(offset.addingProduct(widen(row.chunk(v)), scale))
        v &+= chunkWidth
    }
    var extra = 0.0
    while v < vocab {
        extra += exp(Double(row.scalar(v)) * inverse - shift)
        v &+= 1
    }
    return shift + log(treeSum(sums) + extra)
}
