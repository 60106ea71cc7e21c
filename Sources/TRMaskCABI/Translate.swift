import CTRMask
import TRMaskKernels

/// Translation of the header's structs into kernel types. Anything a C caller can get wrong in
/// the structs themselves (struct sizes, enum values, reserved fields, NULL) is refused here; the
/// kernels' entry points validate the rest. Nothing here traps.

/// Reads a caller's struct after checking that its `struct_size` (the first field) covers this
/// ABI's layout, so a smaller, older struct is never read past its end.
func readStruct<T>(_ pointer: UnsafePointer<T>?) throws(Status) -> T {
    guard let pointer else { throw .nullPointer }
    let size = UnsafeRawPointer(pointer).loadUnaligned(as: UInt32.self)
    guard Int(size) >= MemoryLayout<T>.size else { throw .badStructSize }
    return pointer.pointee
}

func int(_ value: Int64) throws(Status) -> Int {
    guard let int = Int(exactly: value) else { throw .badSize }
    return int
}

/// A view, or nil when its dtype is `TRM_DTYPE_NONE`.
func view(_ view: trm_view_t) throws(Status) -> StridedView? {
    if view.dtype == TRM_DTYPE_NONE { return nil }
    guard let dtype = DType(rawValue: view.dtype) else { throw .badDType }
    guard view.reserved == 0 else { throw .badOption }
    return StridedView(base: view.data, dtype: dtype, rowStride: try int(view.stride_row), colStride: try int(view.stride_col))
}

func out<Element>(_ out: trm_out_t, as: Element.Type) throws(Status) -> OutView<Element> {
    OutView(base: out.data?.assumingMemoryBound(to: Element.self), rowStride: try int(out.stride_row), colStride: try int(out.stride_col))
}

func batch(_ pointer: UnsafePointer<trm_batch_t>?) throws(Status) -> Batch {
    let batch = try readStruct(pointer)
    guard let layout = Layout(rawValue: batch.layout) else { throw .badLayout }
    let source: Source
    switch (try view(batch.logp_train), try view(batch.logp_roll), try view(batch.log_ratio), try view(batch.values)) {
    case (let train?, let roll?, nil, nil): source = .logProbs(train: train, roll: roll)
    case (nil, nil, let logRatio?, nil): source = .logRatio(logRatio)
    case (nil, nil, nil, let values?): source = .values(values)
    default: throw .badInputs
    }
    return Batch(layout: layout, rows: try int(batch.n_rows), cols: try int(batch.n_cols), source: source,
                 mask: try view(batch.mask), lengths: try view(batch.lengths), offsets: try view(batch.offsets),
                 advantages: try view(batch.advantages), rowAdvantages: try view(batch.row_advantages))
}

func criteria(_ pointer: UnsafePointer<trm_criterion_t>?, _ count: Int64) throws(Status) -> [Criterion] {
    guard count >= 0, count <= maximumCriteria else { throw .badSize }
    if count == 0 { return [] }
    guard let pointer else { throw .nullPointer }
    var result: [Criterion] = []
    result.reserveCapacity(Int(count))
    for entry in UnsafeBufferPointer(start: pointer, count: Int(count)) {
        guard let aggregation = Aggregation(rawValue: entry.aggregation) else { throw .badAggregation }
        guard let estimator = Estimator(rawValue: entry.estimator) else { throw .badEstimator }
        result.append(Criterion(aggregation, estimator, lo: entry.lo, hi: entry.hi, klMax: entry.kl_max, eps: entry.eps))
    }
    return result
}

func options(_ pointer: UnsafePointer<trm_options_t>?) throws(Status) -> ReductionOptions {
    let options = try readStruct(pointer)
    guard let policy = NaNPolicy(rawValue: options.nan_policy) else { throw .badNaNPolicy }
    guard options.reject_empty == 0 || options.reject_empty == 1, options.threads >= 0 else { throw .badOption }
    guard options.binary_eps_set == 0 || options.binary_eps_set == 1, options.reserved == 0 else { throw .badOption }
    // A zeroed struct is the default options (the header's rule): clamp 0 = no clamp.
    return ReductionOptions(nanPolicy: policy, clamp: options.clamp == 0 ? .infinity : options.clamp, rejectEmpty: options.reject_empty == 1, threads: Int(options.threads),
                            binaryEps: options.binary_eps_set == 1 ? options.binary_eps : ReductionOptions.defaultBinaryEps,
                            advantageRule: try advantageRule(options.advantage))
}

/// nil for a zeroed rule (none); unknown enum values, flags and reserved fields are refused here,
/// the bounds by the kernel.
func advantageRule(_ rule: trm_advantage_rule_t) throws(Status) -> AdvantageRule? {
    guard let statistic = AdvantageStatistic(rawValue: rule.statistic), let zero = ZeroAdvantage(rawValue: rule.zero_advantage),
          rule.sequence == 0 || rule.sequence == 1, rule.reserved == 0 else { throw .badAdvantageRule }
    if statistic == .none && rule.sequence == 0 {
        guard rule.low == 0, rule.high == 0, rule.sequence_limit == 0, zero == .lower else { throw .badAdvantageRule }
        return nil
    }
    return AdvantageRule(statistic: statistic, zeroAdvantage: zero, low: rule.low, high: rule.high,
                         sequenceLimit: rule.sequence == 1 ? rule.sequence_limit : nil)
}

func maskOutputs(_ out: trm_mask_out_t) throws(Status) -> MaskOutputs {
    guard out.reserved == 0 else { throw .badOption }
    let weights = try TRMaskCABI.out(out.weights, as: Float.self)
    return MaskOutputs(keepRow: try TRMaskCABI.out(out.keep_row, as: UInt8.self),
                       count: try TRMaskCABI.out(out.count, as: Int64.self),
                       nonfinite: try TRMaskCABI.out(out.nonfinite, as: Int64.self),
                       rowStats: try TRMaskCABI.out(out.row_stats, as: Float.self),
                       keepToken: try TRMaskCABI.out(out.keep_token, as: UInt8.self),
                       rejected: out.rejected,
                       weights: weights,
                       weightRule: weights.base == nil ? WeightRule(level: .token, mode: .truncate) : try weightRule(out.weight_rule),
                       advantageCounts: out.advantage_counts)
}

func weightRule(_ rule: trm_weight_rule_t) throws(Status) -> WeightRule {
    guard let level = WeightLevel(rawValue: rule.level), let mode = WeightMode(rawValue: rule.mode) else { throw .badWeightRule }
    return WeightRule(level: level, mode: mode, lo: rule.lo, hi: rule.hi == 0 ? .infinity : rule.hi)  // 0 = no cap
}

/// An output struct the library fills: its `struct_size` (the first field) covers this ABI's
/// layout and its reserved field is 0.
func checkOutputStruct<T>(_ target: UnsafeMutablePointer<T>, reserved: Int32) throws(Status) {
    let size = UnsafeRawPointer(target).loadUnaligned(as: UInt32.self)
    guard Int(size) >= MemoryLayout<T>.size else { throw .badStructSize }
    guard reserved == 0 else { throw .badOption }
}

/// Runs `body` with a place for the kernel's metrics when `target` is given, and copies them
/// into `target` when `body` succeeds (so nothing is written on error).
func withMetrics(_ target: UnsafeMutablePointer<trm_metrics_t>?,
                 _ body: (UnsafeMutablePointer<MaskMetrics>?) -> Status) throws(Status) -> Status {
    guard let target else { return body(nil) }
    try checkOutputStruct(target, reserved: target.pointee.reserved)
    var metrics = MaskMetrics()
    let status = body(&metrics)
    if status == .ok { store(metrics, into: target) }
    return status
}

private func store(_ m: MaskMetrics, into target: UnsafeMutablePointer<trm_metrics_t>) {
    var c = target.pointee
    c.n_rows = Int64(m.rows)
    c.n_rows_nonempty = Int64(m.nonEmptyRows)
    c.n_tokens = Int64(m.tokens)
    c.n_rows_kept = Int64(m.keptRows)
    c.n_tokens_kept = Int64(m.keptTokens)
    c.max_len = Int64(m.maxLength)
    c.masked_row_fraction = m.maskedRowFraction
    c.log_ppl_abs_diff = m.logPerplexityGap
    c.kl_k1 = m.klK1
    c.kl_k3 = m.klK3
    c.chi2_token = m.chi2Token
    c.plugin_kl_max = m.pluginKLMax
    c.plugin_kl_seq = m.pluginKLSeq
    fill(&c.token_mean, 8) { m.tokenMean[$0] }
    fill(&c.token_max, 8) { m.tokenMax[$0] }
    fill(&c.row_mean, Int(TRM_MAX_CRITERIA)) { $0 < m.rowMean.count ? m.rowMean[$0] : .nan }
    fill(&c.row_max, Int(TRM_MAX_CRITERIA)) { $0 < m.rowMax.count ? m.rowMax[$0] : .nan }
    fill(&c.row_min, Int(TRM_MAX_CRITERIA)) { $0 < m.rowMin.count ? m.rowMin[$0] : .nan }
    fill(&c.binary_token_mean, 5) { m.binaryTokenMean[$0] }
    fill(&c.binary_token_max, 5) { m.binaryTokenMax[$0] }
    c.n_positions = Int64(m.positions)
    c.n_tokens_rejected = Int64(m.tokens - m.keptTokens)
    c.delta_mean = m.deltaMean
    c.delta_abs_mean = m.deltaAbsMean
    c.k3_clamped_token_mean = m.k3ClampedTokenMean
    c.k3_clamped_row_mean = m.k3ClampedRowMean
    target.pointee = c
}

/// Fills a C array of doubles (imported as a tuple of `count`).
private func fill<Tuple>(_ array: inout Tuple, _ count: Int, _ value: (Int) -> Double) {
    withUnsafeMutableBytes(of: &array) { bytes in
        let doubles = bytes.bindMemory(to: Double.self)
        for index in 0..<count { doubles[index] = value(index) }
    }
}

/// The status code of a translation followed by a kernel call.
func status(_ body: () throws(Status) -> Status) -> trm_status_t {
    do {
        return try body().rawValue
    } catch {
        return error.rawValue
    }
}

// The shim throws statuses while translating; the conformance lives here, not in the kernels, so
// its metadata stays out of the library's dynamic symbol table.
extension Status: Error {}
