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
                 mask: try view(batch.mask), lengths: try view(batch.lengths), offsets: try view(batch.offsets))
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
        result.append(Criterion(aggregation, estimator, lo: entry.lo, hi: entry.hi))
    }
    return result
}

func options(_ pointer: UnsafePointer<trm_options_t>?) throws(Status) -> ReductionOptions {
    let options = try readStruct(pointer)
    guard let policy = NaNPolicy(rawValue: options.nan_policy) else { throw .badNaNPolicy }
    guard options.reject_empty == 0 || options.reject_empty == 1, options.threads >= 0 else { throw .badOption }
    return ReductionOptions(nanPolicy: policy, clamp: options.clamp, rejectEmpty: options.reject_empty == 1, threads: Int(options.threads))
}

func maskOutputs(_ pointer: UnsafePointer<trm_mask_out_t>?) throws(Status) -> MaskOutputs {
    let out = try readStruct(pointer)
    guard out.reserved == 0 else { throw .badOption }
    return MaskOutputs(keepRow: try TRMaskCABI.out(out.keep_row, as: UInt8.self),
                       count: try TRMaskCABI.out(out.count, as: Int64.self),
                       nonfinite: try TRMaskCABI.out(out.nonfinite, as: Int64.self),
                       rowStats: try TRMaskCABI.out(out.row_stats, as: Float.self),
                       keepToken: try TRMaskCABI.out(out.keep_token, as: UInt8.self),
                       rejected: out.rejected)
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
