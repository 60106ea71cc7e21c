/// The rollout correction's chunk pass: the common calls (contiguous log-probs or log-ratios of
/// float32, bfloat16 or float16 computed in their own dtype; a contiguous bool, uint8, int32,
/// int64 or float32 mask or none; weights in the compute dtype or none) read eight positions at a
/// time straight from the caller's arrays, without row scratch. One pass per row gives the row's
/// sums, every option's lanes, the token weights and the output mask (written as if every sequence
/// option kept the row; a rejected row's mask is rewritten after its decision). Each lane computes
/// exactly what the element pass (`CorrectionKernel`) computes for its position, float32
/// operations rounded to the compute dtype (`ChunkElement`) standing for the element pass's
/// rounded float64 ones, and sums by lane (`CorrectionLanes`): the two passes give the same bits,
/// which the tests check across layouts and dtypes.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How the chunk pass reads `m`; nil (from `init`) for a call the element pass takes.
enum ChunkMask {
    case none, bytes, floats, int32s, int64s

    init?(_ batch: Batch, _ config: CorrectionConfig, weightsDType: DType?) {
        let compute = config.computeDType
        guard compute == .f32 || compute == .bf16 || compute == .f16, weightsDType == nil || weightsDType == compute else {
            return nil
        }
        let primary = batch.source.primary
        guard primary.dtype == compute && primary.colStride == 1,
              batch.source.secondary.map({ $0.dtype == compute && $0.colStride == 1 }) ?? true else { return nil }
        guard let mask = batch.mask else {
            self = .none
            return
        }
        guard mask.colStride == 1 else { return nil }
        switch mask.dtype {
        case .u8, .bool: self = .bytes
        case .f32: self = .floats
        case .i32: self = .int32s
        case .i64: self = .int64s
        default: return nil
        }
    }
}

/// One row's contiguous streams of `Element` and its mask read by `Mask`, for the chunk pass.
struct ChunkLoad<Element: ChunkElement, Mask: MaskLoad> {
    let train: UnsafeRawPointer
    let roll: UnsafeRawPointer?
    let mask: UnsafeRawPointer?

    var paired: Bool { roll != nil }

    /// Positions `p ..< p + 8`: the first stream, the second (0 without one) and `m`.
    @inline(always)
    func chunk(at p: Int, weights: Bool) -> (Lanes, Lanes, WideLanes) {
        let first = Element.load(train + p &* Element.size)
        let second = roll.map { Element.load($0 + p &* Element.size) } ?? Lanes()
        return (first, second, Mask.masses(mask, p, weights: weights))
    }

    /// The last `count < 8` positions from `p`, element by element (nothing past them is read);
    /// the lanes past `count` are 0 with `m = 0`.
    func partialChunk(at p: Int, count: Int, weights: Bool) -> (Lanes, Lanes, WideLanes) {
        var first = Lanes(), second = Lanes()
        for lane in 0..<count {
            first[lane] = Float(Element.one(train + (p + lane) &* Element.size))
            if let roll { second[lane] = Float(Element.one(roll + (p + lane) &* Element.size)) }
        }
        return (first, second, Mask.masses(mask, p, count: count, weights: weights))
    }
}

extension MaskLoad {
    /// `m` of the `count <= 8` positions from `p` (lanes past `count`: 0; nothing past them read).
    @inline(__always)
    static func masses(_ base: UnsafeRawPointer?, _ p: Int, count: Int, weights: Bool) -> WideLanes {
        if count == chunkWidth { return masses(base, p, weights: weights) }
        var m = WideLanes()
        for lane in 0..<count { m[lane] = mass(base, p + lane, weights: weights) }
        return m
    }
}

/// verl's k3_kl term `(exp(delta) - delta) - 1` of the unclamped log-ratio: `e` (the clamped one's
/// exp) except beyond the clamp, where libm's exp is rounded once (as the element pass does).
@inline(always)
private func k3KLTerms<E: ChunkElement>(_ delta: Lanes, _ e: Lanes, limit: Float, _: E.Type) -> Lanes {
    var unclamped = e
    if anySet(laneMask(absolute(delta) .> Lanes(repeating: limit))) {
        for lane in 0..<chunkWidth where delta[lane].magnitude > limit {
            unclamped[lane] = Float(exp(Double(delta[lane])))
        }
        unclamped = E.rounded(unclamped)  // the lanes of e are rounded already: unchanged
    }
    return E.rounded(E.rounded(unclamped - delta) - 1)
}

/// 1 where `m != 0`, else 0.
@inline(always)
private func present(_ absent: WideMask) -> WideLanes { WideLanes(repeating: 1).replacing(with: 0, where: absent) }

/// `m` where `condition`, else 0.
@inline(always)
private func massWhere(_ condition: WideMask, _ m: WideLanes) -> WideLanes { WideLanes().replacing(with: m, where: condition) }

extension CorrectionScan {
    /// One row by the chunk pass, then its decisions (as `scanRow`).
    func chunkRow(_ row: Int, _ kind: ChunkMask, _ lanes: UnsafeMutablePointer<OptionLanes>) {
        let span = batch.rowSpan(row)
        let counted = batch.scanCount(row, span: span.count)
        var record = CorrectionRowRecord()
        var sums = RowLanes(), weightLanes = WeightLanes()
        for index in options.indices { lanes[index] = OptionLanes() }
        let maskGrid = outputs.mask.base == nil || span.count == 0 ? nil
            : TypedGrid(outputs.mask, row: row, start: span.start, layout: batch.layout)
        let weightGrid = outputs.weights.base == nil || span.count == 0 ? nil
            : TypedGrid(outputs.weights, row: row, start: span.start, layout: batch.layout)
        var maskCursor: RowCursor?
        if span.count > 0 {
            let streams = cursors(row, start: span.start)
            maskCursor = streams.2
            let grids = (maskGrid, weightGrid, streams.2)
            // R is the compute dtype's rounding (`rolloutCorrection`), so R.Chunk is its element type.
            chunkPass(R.Chunk.self, kind, streams, grids, count: counted, lanes, &sums, &weightLanes)
        }
        sums.fill(&record)
        let base = row * options.count
        for (index, option) in options.enumerated() { optionRows[base + index] = lanes[index].record(option.rejection.level) }
        decideOptions(row, &record)
        finishRow(row, &record, tokenRejections: sums)
        if let maskGrid {
            if !record.keep {
                for p in 0..<counted {
                    storeMaskValue(keep: false, source: maskCursor?.address(p), at: maskGrid.address(p), outputs.mask.dtype)
                }
            }
            for p in counted..<span.count { storeOne(false, at: maskGrid.address(p), outputs.mask.dtype) }
        }
        if let weightGrid {
            for p in counted..<span.count { storeFloat(0, at: weightGrid.address(p), outputs.weights.dtype) }
        }
        if weights != nil { weightLanes.fill(&record) }
        rows[row] = record
    }

    /// The pass over one row in `E`, its loop specialised for the mask's dtype.
    private func chunkPass<E: ChunkElement>(_: E.Type, _ kind: ChunkMask, _ streams: (RowCursor, RowCursor?, RowCursor?),
                                            _ grids: (TypedGrid?, TypedGrid?, RowCursor?), count n: Int,
                                            _ lanes: UnsafeMutablePointer<OptionLanes>, _ sums: inout RowLanes,
                                            _ weightLanes: inout WeightLanes) {
        let (train, roll, mask) = (streams.0.base, streams.1?.base, streams.2?.base)
        switch kind {
        case .none: chunkPass(ChunkLoad<E, NoMaskLoad>(train: train, roll: roll, mask: nil), grids, count: n, lanes, &sums,
                              &weightLanes)
        case .bytes: chunkPass(ChunkLoad<E, ByteMaskLoad>(train: train, roll: roll, mask: mask), grids, count: n, lanes, &sums,
                               &weightLanes)
        case .floats: chunkPass(ChunkLoad<E, FloatMaskLoad>(train: train, roll: roll, mask: mask), grids, count: n, lanes,
                                &sums, &weightLanes)
        case .int32s: chunkPass(ChunkLoad<E, IntegerMaskLoad<Int32>>(train: train, roll: roll, mask: mask), grids, count: n,
                                lanes, &sums, &weightLanes)
        case .int64s: chunkPass(ChunkLoad<E, IntegerMaskLoad<Int64>>(train: train, roll: roll, mask: mask), grids, count: n,
                                lanes, &sums, &weightLanes)
        }
    }

    /// The pass over one row's `count` positions. A function of its own for each element type and
    /// mask kind: inlined into `chunkRow`, the copies made that caller so large that LLVM stopped
    /// inlining into it, and the loop called out for loads, stores and `DType` getters.
    @inline(never)
    private func chunkPass<E: ChunkElement, Mask: MaskLoad>(_ load: ChunkLoad<E, Mask>, _ grids: (TypedGrid?, TypedGrid?, RowCursor?),
                                                            count n: Int, _ lanes: UnsafeMutablePointer<OptionLanes>,
                                                            _ sums: inout RowLanes, _ weightLanes: inout WeightLanes) {
        let paired = load.paired, maskWeights = config.maskWeights
        let limit = Float(clamp)
        let tokenWeights = weights?.rule.level == .token
        let tokenOptions = options.contains { $0.rejection.level == .token }
        let prepared = options.span  // read in the loop without Array's out-of-line getter
        // Whole chunks of the output mask take vector stores when it is contiguous (fixed per row).
        let maskDType = outputs.mask.dtype
        let maskVectors = grids.2 != nil && grids.0.map { $0.stride == maskDType.size } == true
        var p = 0
        while p < n {
            let count = n - p < chunkWidth ? n - p : chunkWidth  // (Swift.min stayed a call)
            let (first, second, wm) = count == chunkWidth ? load.chunk(at: p, weights: maskWeights)
                : load.partialChunk(at: p, count: count, weights: maskWeights)
            let delta = paired ? E.rounded(first - second) : first
            let absent = wm .== 0
            if paired {
                sums.train.add((wm * widen(first)).replacing(with: 0, where: absent))
                sums.roll.add((wm * widen(second)).replacing(with: 0, where: absent))
            }
            let d = delta.replacing(with: -limit, where: delta .< -limit).replacing(with: limit, where: delta .> limit)
            let e = E.rounded(narrow(simdExp(widen(d))))
            sums.mass.add(wm)
            sums.valid.add(present(absent))
            sums.logRatio.add((wm * widen(delta)).replacing(with: 0, where: absent))
            sums.k3KL.add((wm * widen(k3KLTerms(delta, e, limit: limit, E.self))).replacing(with: 0, where: absent))
            sums.chi2.add((wm * widen(E.rounded(e * e))).replacing(with: 0, where: absent))
            var keep = Lanes(repeating: 1)
            for index in prepared.indices {
                optionChunk(prepared[index], E.self, d: d, e: e, mass: wm, absent: absent, &lanes[index], keep: &keep)
            }
            if tokenOptions {
                let dropped = widen(keep) .== 0
                sums.tokenRejectedMass.add(massWhere(dropped, wm))
                sums.tokenRejected.add(massWhere(dropped, present(absent)))
            }
            if tokenWeights, let weights {
                weightChunk(raw: E.rounded(narrow(widen(e) * wm)), E.self, mass: wm, absent: absent, at: p, count: count, weights,
                            grids.1, &weightLanes)
            }
            if let grid = grids.0 {
                maskChunk(keep, at: p, count: count, grid, source: grids.2, maskDType, vectors: maskVectors)
            }
            p += chunkWidth
        }
        guard let weights, weights.rule.level == .sequence else { return }
        // Sequence weights need the row's sum first: a second pass over m (the row is in cache).
        let sequenceWeight = WideLanes(repeating: sequenceExp(sums.logRatio.total))
        p = 0
        while p < n {
            let count = n - p < chunkWidth ? n - p : chunkWidth
            let wm = Mask.masses(load.mask, p, count: count, weights: maskWeights)
            weightChunk(raw: E.rounded(narrow(sequenceWeight * wm)), E.self, mass: wm, absent: wm .== 0, at: p, count: count,
                        weights, grids.1, &weightLanes)
            p += chunkWidth
        }
    }

    /// One option's values on a chunk: a token option's moments and verdicts (ANDed into `keep`),
    /// a sequence option's sum or maximum.
    @inline(always)
    private func optionChunk<E: ChunkElement>(_ option: PreparedRejection, _: E.Type, d: Lanes, e: Lanes, mass wm: WideLanes,
                                              absent: WideMask, _ lanes: inout OptionLanes, keep: inout Lanes) {
        let x: Lanes  // verl's estimators in the compute dtype, as K1, K2, K3
        switch option.rejection.estimator {
        case .k1: x = -d
        case .k2: x = E.rounded(E.rounded(d * d) * 0.5)
        default: x = E.rounded(E.rounded(e - 1) - d)
        }
        let wx = widen(x)
        switch option.rejection.level {
        case .token:
            let lo = WideLanes(repeating: option.lo), hi = WideLanes(repeating: option.hi)
            lanes.moments.add(wx, mass: wm, absent: absent, clampLo: WideLanes(repeating: option.stdLo), clampHi: hi)
            lanes.moments.high.add(massWhere(wx .> hi, wm))
            lanes.moments.low.add(massWhere(wx .< lo, wm))
            // The bounds are float32 values (rounded to the compute dtype): compared in float32.
            let (low, high) = (Lanes(repeating: Float(option.lo)), Lanes(repeating: Float(option.hi)))
            let passes = Lanes(repeating: 1).replacing(with: 0, where: x .< low).replacing(with: 0, where: x .> high)
                .replacing(with: 0, where: x .!= x)
            let rejected = widen(passes) .== 0
            lanes.rejectedMass.add(massWhere(rejected, wm))
            lanes.rejected.add(massWhere(rejected, present(absent)))
            keep = keep * passes
        case .sequenceSum, .sequenceMean:
            lanes.moments.weighted.add((wm * wx).replacing(with: 0, where: absent))
        case .sequenceMax:
            let candidate = wx.replacing(with: -.infinity, where: absent)
            lanes.moments.largest = lanes.moments.largest.replacing(with: candidate, where: candidate .> lanes.moments.largest)
            lanes.moments.nans = lanes.moments.nans.replacing(with: 1, where: candidate .!= candidate)
        }
    }

    /// The weights of a chunk from `raw = w m` (rounded to `E`, the weights' dtype): truncated or
    /// masked, their moments, and stored at positions `p ..< p + count`.
    @inline(always)
    private func weightChunk<E: ChunkElement>(raw: Lanes, _: E.Type, mass wm: WideLanes, absent: WideMask, at p: Int, count: Int,
                                              _ weights: PreparedWeights, _ grid: TypedGrid?, _ lanes: inout WeightLanes) {
        let (lo, hi) = (Float(weights.lo), Float(weights.hi))
        let weight = weights.rule.mode == .truncate ? raw.replacing(with: hi, where: raw .> hi)
            : raw.replacing(with: 0, where: raw .< lo).replacing(with: 0, where: raw .> hi).replacing(with: 0, where: raw .!= raw)
        let wideRaw = widen(raw), wideHi = WideLanes(repeating: weights.hi)
        lanes.moments.add(widen(weight), mass: wm, absent: absent, clampLo: WideLanes(), clampHi: wideHi)
        lanes.moments.high.add(massWhere(wideRaw .> wideHi, wm))
        lanes.moments.low.add(massWhere(wideRaw .< WideLanes(repeating: weights.lower), wm))
        lanes.oob.add(WideLanes().replacing(with: wm, where: wideRaw .< WideLanes(repeating: weights.lo))
            .replacing(with: wm, where: wideRaw .> wideHi))
        lanes.rawSum.add((wm * wideRaw).replacing(with: 0, where: absent))
        guard let grid else { return }
        if count == chunkWidth && grid.stride == E.size {
            E.store(weight, at: grid.base + p &* E.size)
        } else {
            for lane in 0..<count { storeFloat(Double(weight[lane]), at: grid.address(p + lane), E.dtype) }
        }
    }

    /// The output mask of a chunk (every sequence option keeping the row): `m` where `keep`,
    /// `m * 0` (float) or 0 elsewhere, in the mask's dtype (`vectors`: the mask and the output are
    /// contiguous).
    @inline(always)
    private func maskChunk(_ keep: Lanes, at p: Int, count: Int, _ grid: TypedGrid, source: RowCursor?, _ dtype: DType,
                           vectors: Bool) {
        if count == chunkWidth, vectors, let source {
            if dtype == .f32 {
                // Float's load and store: the stdlib's generic spellings stayed calls here.
                let values = Float.load(source.base + p &* 4)
                Float.store(values.replacing(with: values * 0, where: keep .== 0), at: grid.base + p &* 4)
                return
            }
            if dtype == .i32 {
                let values = (source.base + p &* 4).loadUnaligned(as: SIMD8<Int32>.self)
                (grid.base + p &* 4).storeBytes(of: values.replacing(with: 0, where: keep .== 0), as: SIMD8<Int32>.self)
                return
            }
            if dtype == .i64 {
                let values = (source.base + p &* 8).loadUnaligned(as: SIMD8<Int64>.self)
                (grid.base + p &* 8).storeBytes(of: values.replacing(with: 0, where: widen(keep) .== 0), as: SIMD8<Int64>.self)
                return
            }
            if dtype == .u8 || dtype == .bool {
                let values = (source.base + p).loadUnaligned(as: SIMD8<UInt8>.self)
                var out = SIMD8<UInt8>()
                for lane in 0..<chunkWidth { out[lane] = keep[lane] != 0 ? values[lane] : 0 }
                (grid.base + p).storeBytes(of: out, as: SIMD8<UInt8>.self)
                return
            }
        }
        for lane in 0..<count {
            storeMaskValue(keep: keep[lane] != 0, source: source?.address(p + lane), at: grid.address(p + lane), dtype)
        }
    }
}
