/// The statistics of a rollout-correction call (header: trm_correction_stats_t), reduced from the
/// per-row records in row order (float64, so any thread count gives the same bits). Formulas are
/// those of verl 0.9.1's rollout_corr_helper.py; each field's is in the header.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A sample of per-row values summarised as verl summarises tensors (NaN propagates through
/// every field, as through torch's reductions).
struct RowSample {
    var values: [Double] = []

    var mean: Double { values.isEmpty ? .nan : values.reduce(0, +) / Double(values.count) }
    /// Bessel-corrected (torch's `std`); 0 for fewer than two values (verl's guard).
    var std: Double {
        guard values.count > 1 else { return 0 }
        let mean = self.mean
        return (values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(values.count - 1)).squareRoot()
    }
    var max: Double { values.isEmpty ? .nan : values.reduce(-.infinity, propagatingMax) }
    var min: Double { values.isEmpty ? .nan : values.reduce(.infinity, propagatingMin) }
    func fraction(_ test: (Double) -> Bool) -> Double {
        values.isEmpty ? .nan : Double(values.reduce(0) { $0 + (test($1) ? 1 : 0) }) / Double(values.count)
    }
}

/// `sqrt(max(0, mean(c^2) - mean(c)^2))` with means weighted by m over `mass + 1e-8`; 0 unless
/// `mass > 1` (verl's guard); NaN stays NaN.
func clampedStd(sum: Double, squares: Double, mass: Double) -> Double {
    guard mass > 1 else { return 0 }
    let mean = sum / (mass + 1e-8)
    let variance = squares / (mass + 1e-8) - mean * mean
    return variance.isNaN ? .nan : (variance > 0 ? variance : 0).squareRoot()
}

/// The statistics of the records in `r`, in row order: the one reduction of a call and of a
/// cross-shard reduce, so both give the same bits.
func reduceCorrection(_ r: CorrectionReduction) -> CorrectionStatistics {
    let records = r.rows
    var s = CorrectionStatistics()
    s.rows = records.count
    var rejectedMass = 0.0, rowsRejected = 0
    for record in records {
        s.maskSum += record.mass
        s.validTokens += record.valid
        if record.mass > 0 { s.validRows += 1 }
        rejectedMass += record.rejectedMass
        if record.anyRejected { rowsRejected += 1 }
    }
    let denominator = s.maskSum + 1e-8
    s.maskedFraction = rejectedMass / denominator
    s.seqMaskedFraction = s.rows == 0 ? 0 : Double(rowsRejected) / Double(s.rows)
    s.rejections = r.plan.options.indices.map { reduceRejection(r, $0, statistics: s) }
    if let weights = r.plan.weights { s.weights = reduceWeights(r, weights, statistics: s) }
    s.offPolicy = reduceOffPolicy(r, statistics: s)
    return s
}

private func reduceRejection(_ scan: CorrectionReduction, _ index: Int, statistics s: CorrectionStatistics) -> RejectionStatistics {
    let option = scan.plan.options[index]
    let count = scan.plan.options.count
    let denominator = s.maskSum + 1e-8
    var weighted = 0.0, high = 0.0, low = 0.0, clampedSum = 0.0, clampedSquares = 0.0, rejectedMass = 0.0
    var tokenMax = -Double.infinity, tokenMin = Double.infinity, sawToken = false
    var rowsRejected = 0
    var valid = RowSample()
    for (row, record) in scan.rows.enumerated() {
        let entry = scan.optionRows[row * count + index]
        weighted += entry.moments.weighted
        high += entry.moments.high
        low += entry.moments.low
        clampedSum += entry.moments.clampedSum
        clampedSquares += entry.moments.clampedSquares
        rejectedMass += entry.rejectedMass
        if record.valid > 0 {
            sawToken = true
            tokenMax = propagatingMax(tokenMax, entry.moments.max)
            tokenMin = propagatingMin(tokenMin, entry.moments.min)
        }
        if record.mass > 0 {
            valid.values.append(entry.statistic)
            if entry.anyRejected { rowsRejected += 1 }
        }
    }
    var r = RejectionStatistics()
    r.mean = weighted / denominator
    let sequenceLevel = option.rejection.level != .token && !valid.values.isEmpty
    r.max = sequenceLevel ? valid.max : (sawToken ? tokenMax : 0)
    r.min = sequenceLevel ? valid.min : (sawToken ? tokenMin : 0)
    r.fractionHigh = sequenceLevel ? valid.fraction { $0 > option.hi } : high / denominator
    r.fractionLow = !option.rejection.lo.isFinite ? 0 : (sequenceLevel ? valid.fraction { $0 < option.lo } : low / denominator)
    r.std = clampedStd(sum: clampedSum, squares: clampedSquares, mass: s.maskSum)
    if valid.values.isEmpty {
        (r.seqMean, r.seqStd, r.seqMax, r.seqMin, r.seqMaxDeviation, r.seqFractionHigh, r.seqFractionLow) = (0, 0, 0, 0, 0, 0, 0)
    } else {
        r.seqMean = valid.mean
        r.seqStd = valid.std
        r.seqMax = valid.max
        r.seqMin = valid.min
        r.seqMaxDeviation = RowSample(values: valid.values.map(\.magnitude)).max
        r.seqFractionHigh = valid.fraction { $0 > option.hi }
        r.seqFractionLow = option.rejection.lo.isFinite ? valid.fraction { $0 < option.lo } : 0
    }
    r.maskedFraction = rejectedMass / denominator
    r.seqMaskedFraction = valid.values.isEmpty ? 0 : Double(rowsRejected) / Double(valid.values.count)
    return r
}

private func reduceWeights(_ scan: CorrectionReduction, _ weights: PreparedWeights, statistics s: CorrectionStatistics) -> WeightStatistics {
    let denominator = s.maskSum + 1e-8
    var weighted = 0.0, high = 0.0, low = 0.0, clampedSum = 0.0, clampedSquares = 0.0, oob = 0.0
    var tokenMax = -Double.infinity, tokenMin = Double.infinity, sawToken = false
    var rowMeans = RowSample(), rawMeans = RowSample(), sums = RowSample()
    var validRowMeans = 0.0
    for record in scan.rows {
        let moments = record.weights
        weighted += moments.weighted
        high += moments.high
        low += moments.low
        clampedSum += moments.clampedSum
        clampedSquares += moments.clampedSquares
        oob += record.oob
        if record.valid > 0 {
            sawToken = true
            tokenMax = propagatingMax(tokenMax, moments.max)
            tokenMin = propagatingMin(tokenMin, moments.min)
        }
        let rowMean = moments.weighted / (record.mass + 1e-8)
        rowMeans.values.append(rowMean)
        rawMeans.values.append(record.rawSum / (record.mass + 1e-8))
        sums.values.append(rounded(record.logRatioSum, to: scan.plan.sumDType))
        if record.mass > 0 { validRowMeans += rowMean }
    }
    var w = WeightStatistics()
    w.mean = weighted / denominator
    if weights.rule.level == .sequence {
        // verl takes the log of the thresholds in float32 (torch.tensor of a Python float).
        let logHigh = rounded(Double(Float(log(Double(Float(weights.rule.hi))))), to: scan.plan.sumDType)
        let logLow = rounded(Double(Float(log(Double(Float(weights.rule.statisticsLower))))), to: scan.plan.sumDType)
        let limit = rounded(scan.plan.config.clamp, to: scan.plan.sumDType)
        w.max = sums.values.isEmpty ? .nan : rounded(exp(propagatingMin(sums.max, limit)), to: scan.plan.sumDType)
        w.min = sums.values.isEmpty ? .nan : rounded(exp(sums.min), to: scan.plan.sumDType)
        w.ratioFractionHigh = sums.fraction { $0 > logHigh }
        w.ratioFractionLow = sums.fraction { $0 < logLow }
    } else {
        w.max = sawToken ? tokenMax : 0
        w.min = sawToken ? tokenMin : 0
        w.ratioFractionHigh = high / denominator
        w.ratioFractionLow = low / denominator
    }
    w.std = clampedStd(sum: clampedSum, squares: clampedSquares, mass: s.maskSum)
    let clampedMean = clampedSum / denominator
    w.effectiveSampleSize = 1 / (clampedSquares / ((clampedMean + 1e-8) * (clampedMean + 1e-8)) / denominator)
    w.seqMean = rowMeans.mean
    w.seqStd = rowMeans.std
    w.seqMax = rowMeans.max
    w.seqMin = rowMeans.min
    w.seqMaxDeviation = RowSample(values: rowMeans.values.map { ($0 - 1).magnitude }).max
    w.seqFractionHigh = rawMeans.fraction { $0 > weights.hi }
    w.seqFractionLow = rawMeans.fraction { $0 < weights.lower }
    w.oobRatio = weights.rule.mode == .mask ? oob / denominator : .nan
    let mean: Double
    if weights.rule.level == .token {
        (w.normSum, w.normCount) = (weighted, s.maskSum)
        mean = weighted / denominator
    } else {
        (w.normSum, w.normCount) = (validRowMeans, Double(s.validRows))
        mean = validRowMeans / Swift.max(Double(s.validRows), 1e-8)
    }
    w.normFactor = mean > 1e-8 ? rounded(mean, to: weights.dtype) : 1
    return w
}

private func reduceOffPolicy(_ scan: CorrectionReduction, statistics s: CorrectionStatistics) -> OffPolicyStatistics {
    let denominator = s.maskSum + 1e-8
    var logRatio = 0.0, k3KL = 0.0, chi2 = 0.0
    var seqChi2 = RowSample(), trainLog = RowSample(), rollLog = RowSample(), diff = RowSample()
    for record in scan.rows {
        logRatio += record.logRatioSum
        k3KL += record.k3KL
        chi2 += record.chi2
        seqChi2.values.append(scan.plan.sequenceExp(record.logRatioSum, scale: 2))
        let rowDenominator = record.mass + 1e-8
        trainLog.values.append(-record.trainSum / rowDenominator)
        rollLog.values.append(-record.rollSum / rowDenominator)
        diff.values.append(record.rollSum / rowDenominator - record.trainSum / rowDenominator)
    }
    var o = OffPolicyStatistics()
    o.kl = -logRatio / denominator
    o.k3KL = k3KL / denominator
    o.chi2Token = chi2 / denominator - 1
    o.chi2Seq = seqChi2.mean - 1
    guard scan.plan.logProbs else { return o }
    o.trainingLogPPL = trainLog.mean
    o.trainingPPL = RowSample(values: trainLog.values.map { exp($0) }).mean
    o.rolloutLogPPL = rollLog.mean
    o.rolloutPPL = RowSample(values: rollLog.values.map { exp($0) }).mean
    o.logPPLDiff = diff.mean
    o.logPPLAbsDiff = RowSample(values: diff.values.map(\.magnitude)).mean
    o.logPPLDiffMax = diff.max
    o.logPPLDiffMin = diff.min
    o.pplRatio = RowSample(values: diff.values.map { exp($0) }).mean
    return o
}
