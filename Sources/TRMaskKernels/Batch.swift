/// How rows are laid out (SPEC §10).
public enum Layout: Int32, Sendable {
    /// `[rows, cols]` arrays, each with its own row and column strides.
    case padded = 0
    /// 1-D arrays of `cols` tokens; row `i` is `offsets[i] ..< offsets[i + 1]`.
    case packed = 1
}

/// Where the per-token stream comes from (SPEC §1).
public enum Source: Sendable {
    /// `delta = logp_train - logp_roll`, rounded to float32 once.
    case logProbs(train: StridedView, roll: StridedView)
    /// `delta` given directly.
    case logRatio(StridedView)
    /// A precomputed per-token divergence, read by estimator `value`.
    case values(StridedView)

    /// `logp_train`, the log-ratio, or the values.
    var primary: StridedView {
        switch self {
        case .logProbs(let train, _): train
        case .logRatio(let view), .values(let view): view
        }
    }

    /// `logp_roll`, for log-probs.
    var secondary: StridedView? {
        if case .logProbs(_, let roll) = self { roll } else { nil }
    }

    var givesValues: Bool { if case .values = self { true } else { false } }
}

/// A batch of rows: layout, token stream and validity. Validate with `validate()` before any
/// kernel reads it.
public struct Batch: @unchecked Sendable {
    public var layout: Layout
    public var rows: Int
    /// Padded: tokens per row. Packed: tokens in the 1-D arrays.
    public var cols: Int
    public var source: Source
    /// Nonzero = valid; same layout as the data.
    public var mask: StridedView?
    /// `[rows]`: the first `lengths[i]` positions of row `i` are valid.
    public var lengths: StridedView?
    /// `[rows + 1]`, packed layout only.
    public var offsets: StridedView?
    /// Advantages for an advantage rule (SPEC §4.8), any float dtype: per token (the data's
    /// layout) or per row (`[rows]`, `colStride`); at most one.
    public var advantages: StridedView?
    public var rowAdvantages: StridedView?

    public init(layout: Layout, rows: Int, cols: Int, source: Source, mask: StridedView? = nil,
                lengths: StridedView? = nil, offsets: StridedView? = nil, advantages: StridedView? = nil,
                rowAdvantages: StridedView? = nil) {
        self.layout = layout
        self.rows = rows
        self.cols = cols
        self.source = source
        self.mask = mask
        self.lengths = lengths
        self.offsets = offsets
        self.advantages = advantages
        self.rowAdvantages = rowAdvantages
    }

    /// Number of positions of the token grid (`rows * cols` padded, `cols` packed) of a validated
    /// batch (`checkBatchSizes` made the product representable).
    var gridCount: Int { layout == .padded ? rows &* cols : cols }

    /// Row `i`'s first grid position and its number of positions (before lengths).
    @inline(__always)
    func rowSpan(_ row: Int) -> (start: Int, count: Int) {
        switch layout {
        case .padded:
            return (0, cols)
        case .packed:
            let offsets = offsets.unsafelyUnwrapped
            let start = offsets.index(row)
            return (start, offsets.index(row + 1) - start)
        }
    }

    /// Positions of row `i` that can be valid: the row's span cut to its length.
    @inline(__always)
    func scanCount(_ row: Int, span: Int) -> Int {
        guard let lengths else { return span }
        return Swift.min(span, lengths.index(row))
    }
}

/// A view positioned at one row: element `p` of the row is at `base + p * stride` elements.
/// Only made for rows that have positions to read, so `base` exists (validation guarantees a data
/// pointer for every view with elements).
struct RowCursor {
    var base: UnsafeRawPointer
    var stride: Int
    var dtype: DType

    @inline(__always)
    init(_ view: StridedView, row: Int, start: Int, layout: Layout) {
        let element = layout == .padded ? row &* view.rowStride : start &* view.colStride
        base = view.base.unsafelyUnwrapped + element &* view.dtype.size
        stride = view.colStride
        dtype = view.dtype
    }

    @inline(__always)
    func address(_ p: Int) -> UnsafeRawPointer { base + p &* stride &* dtype.size }

    @inline(__always)
    func float(_ p: Int) -> Float { loadFloat(address(p), dtype) }

    @inline(__always)
    func double(_ p: Int) -> Double { loadDouble(address(p), dtype) }
}
