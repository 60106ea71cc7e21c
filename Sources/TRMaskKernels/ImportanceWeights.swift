/// Rollout-correction importance weights beside the mask (SPEC §5): written by the mask scan in a
/// second pass over each row it keeps, right after the decision (the row is still in cache).

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What a weight is taken over; raw values are the header's `TRM_WEIGHT_*`.
public enum WeightLevel: Int32, Sendable, CaseIterable {
    /// `w_t = rho_t = exp(delta_t)`.
    case token = 0
    /// `w_i = exp(sum_t delta_t)` on every counted token of the row.
    case sequence = 1
    /// `w_i = exp(mean_t delta_t)` on every counted token of the row.
    case geometric = 2
}

/// How a weight is bounded; raw values are the header's `TRM_WEIGHT_MODE_*`.
public enum WeightMode: Int32, Sendable, CaseIterable {
    /// TIS: `min(w, hi)`.
    case truncate = 0
    /// `min(max(w, lo), hi)`.
    case clip = 1
    /// IcePop / MIS: `w` where `lo <= w <= hi`, else exactly 0; decided in log space
    /// (`ln lo <= log w <= ln hi`, SPEC §4.9), so the decision does not depend on how `w` rounds.
    case mask = 2
}

/// A weight rule: level, mode and bounds.
public struct WeightRule: Sendable, Equatable {
    public var level: WeightLevel
    public var mode: WeightMode
    /// Lower bound of `clip` and `mask` (0 = none); `truncate` takes none (0).
    public var lo: Double
    /// The cap of `truncate`, the upper bound of `clip` and `mask`; `+inf` = none.
    public var hi: Double

    public init(level: WeightLevel, mode: WeightMode, lo: Double = 0, hi: Double = .infinity) {
        self.level = level
        self.mode = mode
        self.lo = lo
        self.hi = hi
    }

    /// `0 <= lo <= hi`, `hi > 0` (a zero cap would zero every weight: almost surely a struct left
    /// zero-initialised), no NaN, no `lo` for `truncate`, and a float32 weight between the bounds
    /// (`lo = hi = 0.1` has none: no written weight could satisfy it).
    var isValid: Bool {
        guard lo >= 0, hi >= lo, hi > 0 else { return false }  // also refuses NaN
        guard mode != .truncate || lo == 0 else { return false }
        let band = FloatBand(lo: lo, hi: hi)
        return band.lo[0] <= band.hi[0]
    }
}

/// A rule's bounds rounded inward to float32, applied to float32 weights: a written weight always
/// satisfies the rule's float64 bounds.
struct WeightBounds {
    let mode: WeightMode
    let band: FloatBand
    /// `mask`: the bounds in log space, `[ln lo, ln hi]` (`ln 0 = -inf`), as float64 and rounded
    /// inward to float32 (for float32 log-ratios).
    let logLo: Double, logHi: Double
    let logBand: FloatBand

    init(_ rule: WeightRule) {
        mode = rule.mode
        band = FloatBand(lo: rule.lo, hi: rule.hi)
        logLo = rule.lo > 0 ? log(rule.lo) : -.infinity
        logHi = log(rule.hi)
        logBand = FloatBand(lo: logLo, hi: logHi)
    }

    /// `mask` on token weights: `rho = exp(d)` where `ln lo <= d <= ln hi`, else exactly 0 (NaN
    /// fails).
    @inline(__always)
    func maskInLogSpace(_ d: Lanes) -> Lanes {
        masked(exponentialEstimates(d).ratio, logBand.contains(d))
    }

    /// `mask` on a row weight `exp(s)`: kept iff `ln lo <= s <= ln hi` (NaN fails).
    @inline(__always)
    func maskInLogSpace(_ s: Double) -> Float { logLo <= s && s <= logHi ? Float(exp(s)) : 0 }

    /// The bounded weights; NaN weights (a row sum of `+inf` and `-inf`) become 0.
    @inline(__always)
    func apply(_ w: Lanes) -> Lanes {
        let bounded: Lanes
        switch mode {
        case .truncate: bounded = lanewiseMin(w, band.hi)
        case .clip: bounded = lanewiseMin(lanewiseMax(w, band.lo), band.hi)
        case .mask: bounded = masked(w, band.contains(w))
        }
        return masked(bounded, laneMask(bounded .== bounded))
    }
}

extension GridRow where Element == Float {
    @inline(__always)
    func store(_ values: Lanes, at p: Int, count: Int) {
        if stride == 1 && count == chunkWidth {
            UnsafeMutableRawPointer(base + p).storeBytes(of: values, as: Lanes.self)
            return
        }
        for lane in 0..<count { base[(p &+ lane) &* stride] = values[lane] }
    }
}

extension MaskScan {
    /// Writes row `row`'s weights: 0 on positions that are not counted, on rejected rows, and on
    /// rows with a NaN under the reject policy (fail closed, as the mask).
    func writeWeights<Reader: RowReader>(_ reader: Reader.Type, row: Int, span: (start: Int, count: Int), scanned n: Int,
                                         keep: Bool, summary: RowSummary) {
        let grid = GridRow(outputs.weights, row: row, start: span.start, layout: batch.layout)
        guard keep, summary.counted > 0, plan.nanPolicy != .reject || summary.nans == 0 else {
            grid.fill(0, from: 0, to: span.count)
            return
        }
        let bounds = WeightBounds(outputs.weightRule)
        let rowLog: Double? = switch outputs.weightRule.level {
        case .token: nil
        case .sequence: summary.sums.linear
        case .geometric: summary.sums.linear / Double(summary.counted)
        }
        let logSpace = bounds.mode == .mask
        // A row weight, already bounded (`mask` decides on the float64 log weight).
        let rowWeight: Float? = rowLog.map { logSpace ? bounds.maskInLogSpace($0) : bounds.apply(Lanes(repeating: Float(exp($0))))[0] }
        let source = Reader(batch, row: row, start: span.start, count: n)
        var p = 0
        while p < n {
            let width = Swift.min(chunkWidth, n - p)
            let (raw, valid) = width == chunkWidth ? source.chunk(at: p) : source.partialChunk(at: p, count: width)
            let terms = ChunkTerms(raw, valid: valid, plan: plan)
            let w = rowWeight.map { Lanes(repeating: $0) }
                ?? (logSpace ? bounds.maskInLogSpace(terms.d) : bounds.apply(exponentialEstimates(terms.d).ratio))
            grid.store(masked(w, terms.counted), at: p, count: width)
            p += width
        }
        grid.fill(0, from: n, to: span.count)
    }
}
