#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Advantage-conditioned masks (SPEC §4.8, DPPO): mask only the violation on the side the update
/// pushes toward; and the off-policy sequence mask (OPSM) that drops a row with a negative
/// advantage whose policy drifted too far. Evaluated by the rules pass (tokens) and at the row
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

/// The token rule, ready for the rules pass.
struct AdvantageTokenRule {
    let statistic: AdvantageStatistic
    let lowerOnZero: Bool
    let low: Double, high: Double
    /// `ratio`: `ln low`, `ln high`.
    let logLow: Double, logHigh: Double

    init(_ rule: AdvantageRule) {
        statistic = rule.statistic
        lowerOnZero = rule.zeroAdvantage == .lower
        low = rule.low
        high = rule.high
        logLow = log(rule.low)
        logHigh = log(rule.high)
    }

    /// The binary estimator the statistic reads, if any.
    var needs: BinaryNeeds {
        switch statistic {
        case .bdiff: .difference
        case .bkl: .forward
        case .ratio, .none: []
        }
    }

    /// Whether one counted token is masked, counting its side in `counts`. `values`: the token's
    /// binary values (the rules pass's float32 outputs, the same numbers `token_values` gives);
    /// `delta`: the scan's float32 delta after the clamp. NaN statistics and advantages mask the
    /// token (fail closed) on neither side.
    @inline(__always)
    func masks(lt: Float, lr: Float, values: BinaryLanes, lane: Int, delta: Float, advantage: Double,
               counts: UnsafeMutableBufferPointer<Int>, base: Int) -> Bool {
        let upper: Bool, lower: Bool, statistic: Double
        switch self.statistic {
        case .bdiff:
            statistic = Double(values.difference[lane])
            (upper, lower) = (statistic > high, statistic < -low)
        case .bkl:
            statistic = Double(values.forward[lane])
            (upper, lower) = (lt > lr && statistic > high, lt < lr && statistic > low)
        case .ratio, .none:
            statistic = Double(delta)
            (upper, lower) = (statistic > logHigh, statistic < logLow)
        }
        if statistic.isNaN || advantage.isNaN { return true }
        let masked: Bool
        if advantage > 0 {
            masked = upper
            if masked { counts[base + AdvantageCount.upper] += 1; counts[base + AdvantageCount.positive] += 1 }
        } else {
            masked = (advantage < 0 || lowerOnZero) && lower
            if masked {
                counts[base + AdvantageCount.lower] += 1
                if advantage < 0 { counts[base + AdvantageCount.negative] += 1 }
            }
        }
        return masked
    }
}

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
