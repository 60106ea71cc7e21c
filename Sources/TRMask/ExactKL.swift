import TRMaskKernels

/// The exact per-position divergence from logits and the exact TRM (semantics §4.2, §6).

public typealias LogitOptions = TRMaskKernels.LogitOptions

/// A strided 3-D view of caller memory, `[rows, cols, depth]` (positions `[B, T]` or `[N, 1]`,
/// then the vocabulary or the top-k entries): element `[i, t, v]` is at
/// `base + (i * rowStride + t * colStride + v * depthStride) * dtype.size` bytes. Strides count
/// elements and may be negative or zero. The memory must stay valid during each call.
public struct StridedTensor3 {
    public var base: UnsafeRawPointer?
    public var dtype: DType
    public var rows: Int
    public var cols: Int
    public var depth: Int
    public var rowStride: Int
    public var colStride: Int
    public var depthStride: Int

    public init(base: UnsafeRawPointer?, dtype: DType, rows: Int, cols: Int, depth: Int,
                rowStride: Int, colStride: Int, depthStride: Int = 1) {
        self.base = base
        self.dtype = dtype
        self.rows = rows
        self.cols = cols
        self.depth = depth
        self.rowStride = rowStride
        self.colStride = colStride
        self.depthStride = depthStride
    }

    /// A row-major `[positions, depth]` float32 buffer as positions `[positions, 1]`.
    public init(_ buffer: UnsafeBufferPointer<Float>, positions: Int, depth: Int) {
        self.init(base: UnsafeRawPointer(buffer.baseAddress), dtype: .f32, rows: positions, cols: 1, depth: depth,
                  rowStride: depth, colStride: 0)
    }

    /// A row-major `[positions, depth]` bfloat16 buffer (raw bit patterns) as `[positions, 1]`.
    public init(bfloat16Bits buffer: UnsafeBufferPointer<UInt16>, positions: Int, depth: Int) {
        self.init(base: UnsafeRawPointer(buffer.baseAddress), dtype: .bf16, rows: positions, cols: 1, depth: depth,
                  rowStride: depth, colStride: 0)
    }

    /// A row-major `[positions, depth]` int64 buffer (top-k token ids) as `[positions, 1]`.
    public init(_ buffer: UnsafeBufferPointer<Int64>, positions: Int, depth: Int) {
        self.init(base: UnsafeRawPointer(buffer.baseAddress), dtype: .i64, rows: positions, cols: 1, depth: depth,
                  rowStride: depth, colStride: 0)
    }

    var view: GridView3 {
        GridView3(base: base, dtype: dtype, rowStride: rowStride, colStride: colStride, depthStride: depthStride)
    }

    /// `rows * cols`, or a `.badSize` error naming `argument` when a size is negative or the
    /// product overflows (checked before any allocation: the Swift API never traps).
    func positions(_ argument: String) throws(TRMaskError) -> Int {
        guard depth >= 0 else { throw TRMaskError(.badSize, argument: argument) }
        return try checkedPositions(rows: rows, cols: cols, argument: argument)
    }
}

/// What `exactKL` returns: row-major `[rows * cols]` float32 arrays, 0 at masked positions.
public struct ExactKLResult: Equatable, Sendable {
    /// `KL(pi_roll || pi_theta)` per position.
    public var kl: [Float]
    /// `(1/2) sum |p - q|`, when asked for.
    public var tv: [Float]?
    /// `log p_y` and `log q_y` of the sampled tokens, when token ids were given.
    public var logpRollToken: [Float]?
    public var logpTrainToken: [Float]?
}

/// Exact `KL(pi_roll || pi_theta)` per position from full logits (semantics §6): `q = softmax(b / tau)`
/// for the training logits `b`, `p = softmax(a / tau)` for the rollout logits `a` (float32,
/// bfloat16 or float16, dtypes may differ). Training side first, as everywhere. Masked positions
/// (`mask` zero) are skipped and give 0.
/// With `tokenIDs`, also `log p_y` and `log q_y`; with `tv`, the total variation (a second pass).
/// Accuracy: `|KL - ref| <= 1e-4 ref + 1e-8` against float64. Results do not depend on
/// `options.threads`.
public func exactKL(train: StridedTensor3, rollout: StridedTensor3, mask: (any PositionMask)? = nil,
                    tokenIDs: StridedMatrix<Int64>? = nil, tv: Bool = false,
                    options: LogitOptions = LogitOptions()) throws(TRMaskError) -> ExactKLResult {
    try checkSameGrid(rollout, like: train, name: "rollout")
    if let mask { try checkGrid(mask.rows, mask.cols, like: train, name: "mask") }
    if let tokenIDs { try checkGrid(tokenIDs.rows, tokenIDs.cols, like: train, name: "tokenIDs") }
    let count = try train.positions("train")
    var kl = [Float](repeating: 0, count: count)
    var tvValues = [Float](repeating: 0, count: tv ? count : 0)
    var logpRoll = [Float](repeating: 0, count: tokenIDs == nil ? 0 : count)
    var logpTrain = [Float](repeating: 0, count: tokenIDs == nil ? 0 : count)
    let input = LogitPair(rows: train.rows, cols: train.cols, vocab: train.depth, rollout: rollout.view,
                          train: train.view, mask: mask.map(maskView), tokenIDs: tokenIDs.map(gridView))
    let cols = train.cols
    let status = kl.withUnsafeMutableBufferPointer { kl in
        tvValues.withUnsafeMutableBufferPointer { tvOut in
            logpRoll.withUnsafeMutableBufferPointer { roll in
                logpTrain.withUnsafeMutableBufferPointer { train in
                    func grid(_ buffer: UnsafeMutableBufferPointer<Float>, _ wanted: Bool) -> OutView<Float> {
                        wanted ? OutView(base: buffer.baseAddress, rowStride: cols, colStride: 1) : .absent
                    }
                    let outputs = ExactKLOutputs(kl: grid(kl, true), tv: grid(tvOut, tv), logpRollToken: grid(roll, tokenIDs != nil),
                                                 logpTrainToken: grid(train, tokenIDs != nil))
                    return TRMaskKernels.exactKL(input, options: options, outputs: outputs)
                }
            }
        }
    }
    try TRMaskError.check(status, argument: argument(for: status))
    return ExactKLResult(kl: kl, tv: tv ? tvValues : nil, logpRollToken: tokenIDs == nil ? nil : logpRoll,
                         logpTrainToken: tokenIDs == nil ? nil : logpTrain)
}

/// Lower bound on the per-position KL from the rollout's top-k log-probabilities (`[rows, cols, k]`
/// float, at the rollout's temperature) and distinct token ids (`[rows, cols, k]` int32/int64)
/// against full training logits (semantics §6). Row-major `[rows * cols]`; 0 at masked positions.
/// Training side first, as everywhere.
public func topKKLLowerBound(train: StridedTensor3, rolloutLogprobs: StridedTensor3, rolloutIDs: StridedTensor3,
                             mask: (any PositionMask)? = nil,
                             options: LogitOptions = LogitOptions()) throws(TRMaskError) -> [Float] {
    try checkSameGrid(rolloutIDs, like: rolloutLogprobs, name: "rolloutIDs")
    guard rolloutIDs.depth == rolloutLogprobs.depth else { throw TRMaskError(.badSize, argument: "rolloutIDs") }
    try checkGrid(train.rows, train.cols, like: rolloutLogprobs, name: "train")
    if let mask { try checkGrid(mask.rows, mask.cols, like: rolloutLogprobs, name: "mask") }
    var bound = [Float](repeating: 0, count: try train.positions("train"))
    let input = TopKInputs(rows: train.rows, cols: train.cols, vocab: train.depth, k: rolloutLogprobs.depth,
                           logprobs: rolloutLogprobs.view, ids: rolloutIDs.view, train: train.view, mask: mask.map(maskView))
    let cols = train.cols
    let status = bound.withUnsafeMutableBufferPointer { out in
        TRMaskKernels.topKKLLowerBound(input, options: options, out: OutView(base: out.baseAddress, rowStride: cols, colStride: 1))
    }
    try TRMaskError.check(status, argument: argument(for: status, ids: "rolloutIDs"))
    return bound
}

public extension Criterion {
    /// The paper's TRM-Max&Avg on the exact KL (semantics §4.2): `max value <= 0.1`, `mean value <= 0.002`.
    static let exactTRMDefault = [Criterion(.max, .value, hi: 0.1), Criterion(.mean, .value, hi: 0.002)]
}

/// What `exactTrustRegionMask` returns: the mask result (semantics §3-§4) and the per-position KL it
/// was computed from (row-major `[rows * cols]`, 0 at masked positions).
public struct ExactMaskResult: Equatable, Sendable {
    public var mask: MaskResult
    public var kl: [Float]
}

/// Exact TRM: the criteria (default `Criterion.exactTRMDefault`) on the exact per-position KL of
/// padded `[B, T, V]` logits, with `mask` `[B, T]` the response tokens. A NaN KL on a valid token
/// rejects its row (`options.nanPolicy` of `maskOptions`). Training side first, as everywhere.
public func exactTrustRegionMask(train: StridedTensor3, rollout: StridedTensor3, mask: (any PositionMask)? = nil,
                                 criteria: [Criterion] = Criterion.exactTRMDefault, options: LogitOptions = LogitOptions(),
                                 maskOptions: ReductionOptions = ReductionOptions(), keepToken: Bool = false) throws(TRMaskError) -> ExactMaskResult {
    let kl = try exactKL(train: train, rollout: rollout, mask: mask, options: options).kl
    let rows = train.rows
    let cols = train.cols
    let result = try kl.withUnsafeBufferPointer { (values) throws(TRMaskError) -> MaskResult in
        let batch = try TokenBatch.padded(values: StridedMatrix(values, rows: rows, cols: cols), mask: mask)
        return try trustRegionMask(batch, criteria: criteria, options: maskOptions, keepToken: keepToken)
    }
    return ExactMaskResult(mask: result, kl: kl)
}

/// The element types of the logit functions' masks, as the C ABI takes them (U8, BOOL).
public protocol PositionMaskScalar: TokenScalar {}
extension UInt8: PositionMaskScalar {}
extension Bool: PositionMaskScalar {}

/// A per-position mask of the logit functions: a `StridedMatrix<UInt8>` or `StridedMatrix<Bool>`
/// over the position grid (nonzero = the position counts).
public protocol PositionMask: MaskMatrix {}
extension StridedMatrix: PositionMask where Element: PositionMaskScalar {}

private func maskView(_ m: any PositionMask) -> StridedView {
    StridedView(base: m.rawBaseAddress, dtype: m.elementDType, rowStride: m.rowStride, colStride: m.colStride)
}

private func gridView<E: TokenScalar>(_ m: StridedMatrix<E>) -> StridedView {
    StridedView(base: UnsafeRawPointer(m.base), dtype: E.dtype, rowStride: m.rowStride, colStride: m.colStride)
}

private func checkGrid(_ rows: Int, _ cols: Int, like reference: StridedTensor3, name: String) throws(TRMaskError) {
    guard rows == reference.rows, cols == reference.cols else { throw TRMaskError(.badSize, argument: name) }
}

private func checkSameGrid(_ tensor: StridedTensor3, like reference: StridedTensor3, name: String) throws(TRMaskError) {
    guard tensor.rows == reference.rows, tensor.cols == reference.cols, tensor.depth == reference.depth else {
        throw TRMaskError(.badSize, argument: name)
    }
}

private func argument(for status: Status, ids: String = "tokenIDs") -> String? {
    switch status {
    case .badTemperature: "temperature"
    case .badTokenID: ids
    case .badOption: "threads"
    default: nil
    }
}
