#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Advantage-conditioned masks (SPEC §4.8, DPPO): mask only the violation on the side the update
/// pushes toward; and the off-policy sequence mask (OPSM) that drops a row with a negative
/// advantage whose policy drifted too far. Evaluated in the row scan (tokens, `RulesRow`) and at the row
/// decision (rows).

/// The statistic a token advantage rule tests; raw values are the header's `TRM_ADV_*`.
public enum AdvantageStatistic: Int32, Sendable, CaseIterable {
    /// No token rule.
    case none = 0
    /// `D = p_t - p_r`: upper violation `D > high`, lower `D < -low`.
    case bdiff = 1
    /// `bkl`: upper `lt > lr` and `bkl > high`, lower `lt < lr` and `bkl > low`.
    case bkl = 2
    /// `delta`: upper `delta > ln high`, lower `delta < ln low`.
    case ratio = 3
}

/// What a zero advantage does; raw values are the header's `TRM_ADV_ZERO_*`.
public enum ZeroAdvantage: Int32, Sendable, CaseIterable {
    /// The lower test applies (prime-rl, verl's DPPO, the DPPO authors).
    case lower = 0
    /// Never masked (SkyRL).
    case keep = 1
}

/// An advantage rule: the token rule (`statistic`, `low`, `high`, `zeroAdvantage`) and/or the row
/// rule (`sequenceLimit`: keep a row iff `A_i >= 0` or `mean_t(-delta) <= limit`).
public struct AdvantageRule: Sendable, Equatable {
    public var statistic: AdvantageStatistic
    public var zeroAdvantage: ZeroAdvantage
    public var low: Double
    public var high: Double
    /// nil: no row rule.
    public var sequenceLimit: Double?

    public init(statistic: AdvantageStatistic = .none, zeroAdvantage: ZeroAdvantage = .lower, low: Double = 0,
                high: Double = 0, sequenceLimit: Double? = nil) {
        self.statistic = statistic
        self.zeroAdvantage = zeroAdvantage
        self.low = low
        self.high = high
        self.sequenceLimit = sequenceLimit
    }

    /// Bounds `>= 0` (NaN refused; ratio bounds `> 0`, an infinite one disables its side), a limit
    /// that is not NaN, and something to do.
    var isValid: Bool {
        guard statistic != .none || sequenceLimit != nil else { return false }
        if let sequenceLimit, sequenceLimit.isNaN { return false }
        switch statistic {
        case .none: return low == 0 && high == 0
        case .bdiff, .bkl: return low >= 0 && high >= 0
        case .ratio: return low > 0 && high > 0
        }
    }

    /// Whether the token rule needs the two log-probabilities (not only delta).
    var needsLogProbs: Bool { statistic == .bdiff || statistic == .bkl }
}

/// The side counts of SPEC §4.8, then the rows the sequence rule rejects.
enum AdvantageCount {
    static let upper = 0, lower = 1, positive = 2, negative = 3, rows = 4
    static let slots = 5
}

/// The token rule, ready for the scan: its thresholds as float32 bounds that give the
/// float64 comparisons exactly (`x > t` iff `x > floor32(t)`, `x < t` iff `x < ceil32(t)` for a
/// float32 `x`).
struct AdvantageTokenRule {
    let statistic: AdvantageStatistic
    let lowerOnZero: Bool
    /// Upper violation: statistic > `upper`; lower violation: statistic < `lower` (`bdiff`,
    /// `ratio`) or > `lower` (`bkl`, on the side where `lt < lr`).
    let upper: Lanes, lower: Lanes

    init(_ rule: AdvantageRule) {
        statistic = rule.statistic
        lowerOnZero = rule.zeroAdvantage == .lower
        func floor32(_ t: Double) -> Float { var f = Float(t); if Double(f) > t { f = f.nextDown }; return f }
        func ceil32(_ t: Double) -> Float { var f = Float(t); if Double(f) < t { f = f.nextUp }; return f }
        switch rule.statistic {
        case .bdiff: (upper, lower) = (Lanes(repeating: floor32(rule.high)), Lanes(repeating: ceil32(-rule.low)))
        case .bkl: (upper, lower) = (Lanes(repeating: floor32(rule.high)), Lanes(repeating: floor32(rule.low)))
        case .ratio, .none: (upper, lower) = (Lanes(repeating: floor32(log(rule.high))), Lanes(repeating: ceil32(log(rule.low))))
        }
    }

    /// The binary estimator the statistic reads, if any.
    var needs: BinaryNeeds {
        switch statistic {
        case .bdiff: .difference
        case .bkl: .forward
        case .ratio, .none: []
        }
    }

    /// The counted lanes of a chunk this rule masks, counting their sides in `counts` (at `base`).
    /// `values`: the chunk's binary values (the numbers `token_values` gives); `delta`: the
    /// scan's float32 delta after the clamp; `sign`: each advantage's sign (1, -1, 0, or NaN).
    /// A NaN statistic or advantage masks its token, on neither side (fail closed).
    @inline(__always)
    func masked(_ values: BinaryLanes, lt: Lanes, lr: Lanes, delta: Lanes, sign: Lanes, counted: LaneMask,
                counts: UnsafeMutableBufferPointer<Int>, base: Int) -> LaneMask {
        let stat: Lanes, upperSide: LaneMask, lowerSide: LaneMask
        switch statistic {
        case .bdiff:
            stat = values.difference
            (upperSide, lowerSide) = (laneMask(stat .> upper), laneMask(stat .< lower))
        case .bkl:
            stat = values.forward
            upperSide = laneMask(lt .> lr) & laneMask(stat .> upper)
            lowerSide = laneMask(lt .< lr) & laneMask(stat .> lower)
        case .ratio, .none:
            stat = delta
            (upperSide, lowerSide) = (laneMask(stat .> upper), laneMask(stat .< lower))
        }
        let zero = Lanes()
        let positive = laneMask(sign .> zero), negative = laneMask(sign .< zero)
        let lowerApplies = lowerOnZero ? ~positive : negative
        let undefined = ~laneMask(stat .== stat) | ~laneMask(sign .== sign)  // NaN
        let up = counted & positive & upperSide & ~undefined
        let down = counted & lowerApplies & lowerSide & ~undefined
        if anySet(up | down) {
            counts[base + AdvantageCount.upper] += laneCount(up)
            counts[base + AdvantageCount.positive] += laneCount(up)
            counts[base + AdvantageCount.lower] += laneCount(down)
            counts[base + AdvantageCount.negative] += laneCount(down & negative)
        }
        return up | down | (undefined & counted)
    }
}

/// An advantage's sign as a float: 1, -1, 0, or NaN (exact for any double, however small).
@inline(__always)
func advantageSign(_ a: Double) -> Float { a > 0 ? 1 : (a < 0 ? -1 : (a == 0 ? 0 : .nan)) }

extension MaskScan {
    /// The sequence rule (OPSM) for one row: kept iff `A_i >= 0` or `mean_t(-delta) <= limit`,
    /// an empty row having mean 0. A NaN advantage or (reject policy) NaN mean rejects the row.
    func passesSequenceRule(_ row: Int, _ summary: RowSummary, limit: Double) -> Bool {
        let advantage = batch.rowAdvantages.map { loadDouble($0.address(row: 0, col: row), $0.dtype) } ?? .nan  // validated: present
        let meanK1 = -summary.logMean(nanPolicy: plan.nanPolicy)
        if advantage.isNaN || meanK1.isNaN { return false }
        return advantage >= 0 || meanK1 <= limit
    }
}
