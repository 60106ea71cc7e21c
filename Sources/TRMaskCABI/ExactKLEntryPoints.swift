import CTRMask
import TRMaskKernels

/// The C entry points of the exact-KL section of include/trmask.h (SPEC §6): translate the
/// structs, then call the kernel entry point, which validates everything else.

@c @implementation
public func trm_exact_kl(_ pair: UnsafePointer<trm_logit_pair_t>!, _ options: UnsafePointer<trm_logit_options_t>!,
                         _ out: UnsafePointer<trm_exact_kl_out_t>!) -> trm_status_t {
    status { () throws(Status) in
        let pair = try readStruct(pair)
        guard pair.reserved == 0 else { throw .badOption }
        let input = LogitPair(rows: try int(pair.n_rows), cols: try int(pair.n_cols), vocab: try int(pair.vocab),
                              rollout: try view3(pair.rollout), train: try view3(pair.train),
                              mask: try view(pair.mask), tokenIDs: try view(pair.token_ids))
        let out = try readStruct(out)
        guard out.reserved == 0 else { throw .badOption }
        let outputs = ExactKLOutputs(kl: try TRMaskCABI.out(out.kl, as: Float.self), tv: try TRMaskCABI.out(out.tv, as: Float.self),
                                     logpRollToken: try TRMaskCABI.out(out.logp_roll_token, as: Float.self),
                                     logpTrainToken: try TRMaskCABI.out(out.logp_train_token, as: Float.self))
        return exactKL(input, options: try logitOptions(options), outputs: outputs)
    }
}

@c @implementation
public func trm_topk_kl_lower_bound(_ batch: UnsafePointer<trm_topk_batch_t>!, _ options: UnsafePointer<trm_logit_options_t>!,
                                    _ outKlLb: trm_out_t) -> trm_status_t {
    status { () throws(Status) in
        let batch = try readStruct(batch)
        guard batch.reserved == 0 else { throw .badOption }
        let input = TopKInputs(rows: try int(batch.n_rows), cols: try int(batch.n_cols), vocab: try int(batch.vocab),
                               k: try int(batch.k), logprobs: try view3(batch.rollout_logprobs),
                               ids: try view3(batch.rollout_ids), train: try view3(batch.train), mask: try view(batch.mask))
        return topKKLLowerBound(input, options: try logitOptions(options), out: try out(outKlLb, as: Float.self))
    }
}

/// A required 3-D view (TRM_DTYPE_NONE is refused as an unknown dtype for these arguments).
private func view3(_ view: trm_view3_t) throws(Status) -> GridView3 {
    guard let dtype = DType(rawValue: view.dtype) else { throw .badDType }
    guard view.reserved == 0 else { throw .badOption }
    return GridView3(base: view.data, dtype: dtype, rowStride: try int(view.stride_row), colStride: try int(view.stride_col),
                     depthStride: try int(view.stride_depth))
}

private func logitOptions(_ pointer: UnsafePointer<trm_logit_options_t>?) throws(Status) -> LogitOptions {
    let options = try readStruct(pointer)
    guard options.threads >= 0 else { throw .badOption }
    // A zeroed struct is the default options (the header's rule): temperature 0 = 1.
    return LogitOptions(temperature: options.temperature == 0 ? 1 : options.temperature, threads: Int(options.threads))
}
