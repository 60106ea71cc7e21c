import CTRMask
import TRMaskKernels

/// The C entry points of the rollout-correction section of include/trmask.h: translate the structs,
/// then call the kernel entry point, which validates everything else.

@c @implementation
public func trm_rollout_correction(_ batch: UnsafePointer<trm_batch_t>!, _ config: UnsafePointer<trm_correction_config_t>!,
                                   _ out: UnsafePointer<trm_correction_out_t>!) -> trm_status_t {
    status { () throws(Status) in
        let out = try readStruct(out)
        guard out.reserved == 0 else { throw .badOption }
        let batch = try TRMaskCABI.batch(batch), config = try correctionConfig(config)
        var outputs = CorrectionOutputs(mask: try typedOut(out.mask), keepRow: try TRMaskCABI.out(out.keep_row, as: UInt8.self),
                                        weights: try typedOut(out.weights))
        let records = out.rows.data == nil ? nil : try rowRecords(out.rows)
        guard let target = out.stats else {
            return rolloutCorrection(batch, config: config, outputs: outputs, rowRecords: records)
        }
        try checkOutputStruct(target, reserved: target.pointee.reserved)
        var statistics = CorrectionStatistics()
        let status = withUnsafeMutablePointer(to: &statistics) { pointer in
            outputs.statistics = pointer
            return rolloutCorrection(batch, config: config, outputs: outputs, rowRecords: records)
        }
        if status == .ok { store(statistics, into: target) }
        return status
    }
}

@c @implementation
public func trm_correction_reduce(_ config: UnsafePointer<trm_correction_config_t>!, _ shards: UnsafePointer<trm_correction_rows_t>!,
                                  _ nShards: Int64, _ stats: UnsafeMutablePointer<trm_correction_stats_t>!) -> trm_status_t {
    status { () throws(Status) in
        let config = try correctionConfig(config)
        guard nShards >= 0, nShards <= Int64(maximumCorrectionShards) else { throw .badSize }
        guard let stats else { throw .nullPointer }
        try checkOutputStruct(stats, reserved: stats.pointee.reserved)
        var buffers: [CorrectionRowsBuffer] = []
        if nShards > 0 {
            guard let shards else { throw .nullPointer }
            buffers.reserveCapacity(Int(nShards))
            for shard in UnsafeBufferPointer(start: shards, count: Int(nShards)) { buffers.append(try rowRecords(shard)) }
        }
        var statistics = CorrectionStatistics()
        let target = UnsafeRawBufferPointer(start: stats, count: MemoryLayout<trm_correction_stats_t>.size)
        let status = reduceCorrectionRows(config: config, shards: buffers, statistics: &statistics, target: target)
        if status == .ok { store(statistics, into: stats) }
        return status
    }
}

@c @implementation
public func trm_weights_divide(_ layout: Int32, _ nRows: Int64, _ nCols: Int64, _ offsets: trm_view_t, _ divisor: Double,
                               _ weights: trm_typed_out_t) -> trm_status_t {
    status { () throws(Status) in
        guard let layout = Layout(rawValue: layout) else { throw .badLayout }
        guard weights.reserved == 0 else { throw .badOption }
        guard let dtype = DType(rawValue: weights.dtype) else { throw .badDType }
        let grid = TypedOut(base: weights.data, dtype: dtype, rowStride: try int(weights.stride_row),
                            colStride: try int(weights.stride_col))
        return divideWeights(layout: layout, rows: try int(nRows), cols: try int(nCols), offsets: try view(offsets),
                             divisor: divisor, weights: grid)
    }
}

/// A row-records descriptor; its data and sizes are the kernel's to check.
private func rowRecords(_ rows: trm_correction_rows_t) throws(Status) -> CorrectionRowsBuffer {
    guard rows.reserved == 0, rows.log_probs == 0 || rows.log_probs == 1 else { throw .badOption }
    func dtype(_ raw: Int32) throws(Status) -> DType? {
        if raw == TRM_DTYPE_NONE { return nil }
        guard let dtype = DType(rawValue: raw) else { throw .badDType }
        return dtype
    }
    return CorrectionRowsBuffer(base: rows.data, rows: try int(rows.n_rows), maskDType: try dtype(rows.mask_dtype),
                                weightsDType: try dtype(rows.weights_dtype), logProbs: rows.log_probs == 1)
}

private func typedOut(_ out: trm_typed_out_t) throws(Status) -> TypedOut {
    guard out.reserved == 0 else { throw .badOption }
    guard out.data != nil else { return .absent }
    guard let dtype = DType(rawValue: out.dtype) else { throw .badDType }
    return TypedOut(base: out.data, dtype: dtype, rowStride: try int(out.stride_row), colStride: try int(out.stride_col))
}

private func correctionConfig(_ pointer: UnsafePointer<trm_correction_config_t>?) throws(Status) -> CorrectionConfig {
    let c = try readStruct(pointer)
    guard let compute = DType(rawValue: c.compute_dtype), let mean = DType(rawValue: c.mean_dtype) else { throw .badDType }
    for flag in [c.mask_weights, c.weights, c.normalize] where flag != 0 && flag != 1 { throw .badOption }
    guard c.n_rejections >= 0, c.n_rejections <= Int32(maximumRejections) else { throw .badRejection }
    var rejections: [Rejection] = []
    if c.n_rejections > 0 {
        guard let entries = c.rejections else { throw .nullPointer }
        for entry in UnsafeBufferPointer(start: entries, count: Int(c.n_rejections)) {
            guard let level = RejectionLevel(rawValue: entry.level), let estimator = Estimator(rawValue: entry.estimator) else {
                throw .badRejection
            }
            rejections.append(Rejection(level, estimator, lo: entry.lo, hi: entry.hi))
        }
    }
    var rule: WeightRule?
    if c.weights == 1 {
        guard let level = WeightLevel(rawValue: c.weight_rule.level), let mode = WeightMode(rawValue: c.weight_rule.mode) else {
            throw .badCorrectionWeights
        }
        rule = WeightRule(level: level, mode: mode, lo: c.weight_rule.lo, hi: c.weight_rule.hi)
    }
    return CorrectionConfig(computeDType: compute, meanDType: mean, maskWeights: c.mask_weights == 1, clamp: c.clamp,
                            threads: Int(c.threads), rejections: rejections, weightRule: rule, normalize: c.normalize == 1)
}

private func store(_ s: CorrectionStatistics, into target: UnsafeMutablePointer<trm_correction_stats_t>) {
    var c = target.pointee
    c.n_rows = Int64(s.rows)
    c.n_rows_valid = Int64(s.validRows)
    c.n_tokens_valid = Int64(s.validTokens)
    c.mask_sum = s.maskSum
    c.masked_fraction = s.maskedFraction
    c.seq_masked_fraction = s.seqMaskedFraction
    let w = s.weights
    c.weights = trm_weight_stats_t(
        mean: w.mean, max: w.max, min: w.min, std: w.std, eff_sample_size: w.effectiveSampleSize,
        ratio_fraction_high: w.ratioFractionHigh, ratio_fraction_low: w.ratioFractionLow, seq_mean: w.seqMean,
        seq_std: w.seqStd, seq_max: w.seqMax, seq_min: w.seqMin, seq_max_deviation: w.seqMaxDeviation,
        seq_fraction_high: w.seqFractionHigh, seq_fraction_low: w.seqFractionLow, oob_ratio: w.oobRatio,
        norm_sum: w.normSum, norm_count: w.normCount, norm_factor: w.normFactor)
    let o = s.offPolicy
    c.offpolicy = trm_offpolicy_stats_t(
        kl: o.kl, k3_kl: o.k3KL, training_ppl: o.trainingPPL, training_log_ppl: o.trainingLogPPL, rollout_ppl: o.rolloutPPL,
        rollout_log_ppl: o.rolloutLogPPL, log_ppl_diff: o.logPPLDiff, log_ppl_abs_diff: o.logPPLAbsDiff,
        log_ppl_diff_max: o.logPPLDiffMax, log_ppl_diff_min: o.logPPLDiffMin, ppl_ratio: o.pplRatio, chi2_token: o.chi2Token,
        chi2_seq: o.chi2Seq)
    withUnsafeMutableBytes(of: &c.rejections) { bytes in
        let entries = bytes.bindMemory(to: trm_rejection_stats_t.self)
        for index in 0..<entries.count {
            let r = index < s.rejections.count ? s.rejections[index] : RejectionStatistics()
            entries[index] = trm_rejection_stats_t(
                mean: r.mean, max: r.max, min: r.min, std: r.std, fraction_high: r.fractionHigh, fraction_low: r.fractionLow,
                seq_mean: r.seqMean, seq_std: r.seqStd, seq_max: r.seqMax, seq_min: r.seqMin,
                seq_max_deviation: r.seqMaxDeviation, seq_fraction_high: r.seqFractionHigh,
                seq_fraction_low: r.seqFractionLow, masked_fraction: r.maskedFraction,
                seq_masked_fraction: r.seqMaskedFraction)
        }
    }
    target.pointee = c
}
