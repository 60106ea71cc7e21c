/// What a rollout-correction call reduces its row records with: the options and weight rule
/// prepared in the dtypes of their statistics. It depends on the config and on three facts of the
/// call (the mask's dtype, the weights' dtype, log-probs or a log-ratio), so a scan and a reduce
/// of row records from several shards (`CorrectionRows.swift`) derive the same plan, and
/// `reduceCorrection` gives them the same bits.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct CorrectionPlan {
    let config: CorrectionConfig
    let options: [PreparedRejection]
    let weights: PreparedWeights?
    /// The dtype of masked sums: torch multiplies the values by the mask, so a float mask
    /// promotes them (`compute` with a bool or integer mask).
    let sumDType: DType
    /// The dtype of masked means: the sum's divided by the denominator's.
    let meanDType: DType
    /// The batch gave both log-probs (the perplexity statistics need them).
    let logProbs: Bool

    /// `maskDType`: the batch mask's (nil without one); `weightsDType`: the weights output's (nil
    /// when none is written: the weights are then computed in the compute dtype).
    init(_ config: CorrectionConfig, maskDType: DType?, weightsDType: DType?, logProbs: Bool) {
        self.config = config
        self.logProbs = logProbs
        let compute = config.computeDType
        let sumDType = maskDType.map { $0.isFloat ? promoted(compute, $0) : compute } ?? compute
        self.sumDType = sumDType
        meanDType = promoted(sumDType, config.meanDType)
        options = config.rejections.map { rejection in
            let dtype: DType
            switch rejection.level {
            case .sequenceSum: dtype = sumDType
            case .sequenceMean: dtype = promoted(sumDType, config.meanDType)
            default: dtype = compute
            }
            return PreparedRejection(rejection, statisticDType: dtype)
        }
        weights = config.weightRule.map { rule in
            let dtype = weightsDType ?? compute
            return PreparedWeights(rule: rule, dtype: dtype, lo: rounded(rule.lo, to: dtype), hi: rounded(rule.hi, to: dtype),
                                   lower: rounded(rule.statisticsLower, to: dtype))
        }
    }

    /// `exp(scale * clamp(S))` of a row's masked log-ratio sum `S` (`sequenceWeight`).
    func sequenceExp(_ sum: Double, scale: Double = 1) -> Double {
        sequenceWeight(sum, clamp: config.clamp, dtype: sumDType, scale: scale)
    }
}

/// `exp(scale * clamp(S))` of a row's masked log-ratio sum `S`, each step rounded to the sums'
/// `dtype`: verl's sequence weight (scale 1), and the statistics built on it.
func sequenceWeight(_ sum: Double, clamp: Double, dtype: DType, scale: Double = 1) -> Double {
    let limit = rounded(clamp, to: dtype)
    return rounded(exp(rounded(scale * clamped(rounded(sum, to: dtype), -limit, limit), to: dtype)), to: dtype)
}

/// The input of `reduceCorrection`: a plan and the records of every row, in row order (one
/// call's, or several shards' concatenated in rank order).
struct CorrectionReduction {
    let plan: CorrectionPlan
    let rows: UnsafeBufferPointer<CorrectionRowRecord>
    /// `rows.count * plan.options.count` entries, row-major.
    let optionRows: UnsafeBufferPointer<OptionRecord>
}
