/// Column-major batches (the row stride is 1, as in `x.T` of a `[T, B]` array): reading one row
/// at a time would touch a new cache line for every token. Here eight rows are the eight lanes
/// and the scan walks the positions, loading eight neighbouring rows at once.
///
/// Each row's statistics are accumulated exactly as the row scan does: position `p` feeds
/// position lane `p mod 8`, float32 partials over groups of 64 positions, float64 lanes combined
/// by the same tree. So the results are bit-identical to every other layout.

/// Whether the column scan serves a batch: padded float32 streams and a byte mask (or none), all
/// with row stride 1, at least one full group of eight rows, and positions countable exactly in
/// float32 lanes. Rows without positions never reach it: their arrays have no elements, so
/// their data may be NULL.
func columnScanServes(_ batch: Batch) -> Bool {
    guard batch.layout == .padded, batch.rows >= chunkWidth, batch.cols > 0, batch.cols < 1 << 24 else { return false }
    let views = [batch.source.primary, batch.source.secondary ?? batch.source.primary]
    guard views.allSatisfy({ $0.dtype == .f32 && $0.rowStride == 1 }) else { return false }
    guard let mask = batch.mask else { return true }
    return mask.dtype.isByteMask && mask.rowStride == 1
}

/// Eight consecutive rows of a column-major batch.
struct ColumnBlock<Kind: StreamKind> {
    let first: UnsafeRawPointer
    let second: UnsafeRawPointer
    let firstStride: Int
    let secondStride: Int
    let mask: UnsafeRawPointer?
    let maskStride: Int

    init(_ batch: Batch, firstRow: Int) {
        let primary = batch.source.primary
        let secondary = batch.source.secondary ?? primary
        first = primary.base.unsafelyUnwrapped + firstRow &* 4
        second = secondary.base.unsafelyUnwrapped + firstRow &* 4
        firstStride = primary.colStride &* 4
        secondStride = secondary.colStride &* 4
        mask = batch.mask.map { $0.base.unsafelyUnwrapped + firstRow }
        maskStride = batch.mask?.colStride ?? 0
    }

    /// Position `p` of the eight rows; lanes at or past their row's `limit` are invalid.
    @inline(__always)
    func load(_ p: Int, limit: Lanes) -> (Lanes, LaneMask) {
        let a = (first + p &* firstStride).loadUnaligned(as: Lanes.self)
        let value = Kind.paired ? a - (second + p &* secondStride).loadUnaligned(as: Lanes.self) : a
        var valid = laneMask(Lanes(repeating: Float(p)) .< limit)
        if let mask { valid &= byteMask((mask + p &* maskStride).loadUnaligned(as: SIMD8<UInt8>.self)) }
        return (value, valid)
    }
}

/// Rows per column tile: 128 lane groups of eight rows, so one position of a tile is 4 KiB of
/// contiguous bytes of each float32 input, and a tile walks memory in long sequential runs the
/// prefetchers follow (64-row tiles jump a cache line or two per position and were 4x slower).
let columnTileRows = 1024

/// One lane group's running state across a tile's positions.
struct ColumnLanes {
    var lanes = LaneStats()  // counts and extremes: lane = row
    var wide = InlineArray<8, WideSums>(repeating: WideSums())  // float64 sums per position lane
    var counts = (counted: SIMD8<Int>(), nonfinite: SIMD8<Int>(), nans: SIMD8<Int>())
}

/// The float32 partials of one lane group over one group of positions, one per position lane.
typealias ColumnPartials = InlineArray<8, GroupSums>

extension MaskScan {
    /// Scans rows `firstRow ..< firstRow + groups * 8` of a column-major batch (`groups * 8` <=
    /// `columnTileRows`) and decides them. The tile goes in groups of 64 positions; within one,
    /// each lane group walks the 64 positions with its state in registers (`smallColumnChunks`),
    /// reading the half cache line its eight rows occupy at each position (its neighbour group
    /// reads the other half next, from L1).
    func scanColumns<Kind: StreamKind, Shape: ScanShape>(_ kind: Kind.Type, _ shape: Shape.Type, firstRow: Int, groups: Int,
                                                           rejected: UnsafeMutableBufferPointer<Int>) {
        withUnsafeTemporaryAllocation(of: ColumnLanes.self, capacity: groups) { states in
            // Each row's positions to read (its length), as float lanes for the validity compare.
            var limits = InlineArray<128, Lanes>(repeating: Lanes())
            var end = 0
            for group in 0..<groups {
                for lane in 0..<chunkWidth {
                    let count = batch.scanCount(firstRow + group * chunkWidth + lane, span: batch.cols)
                    limits[group][lane] = Float(count)
                    end = Swift.max(end, count)
                }
                (states.baseAddress.unsafelyUnwrapped + group).initialize(to: ColumnLanes())
            }
            let plan = self.plan
            var p = 0
            while p < end {
                let groupEnd = Swift.min(end, p + GroupSums.width)
                for group in 0..<groups {
                    let block = ColumnBlock<Kind>(batch, firstRow: firstRow + group * chunkWidth)
                    let limit = limits[group]
                    var lanes = states[group].lanes
                    var partials = ColumnPartials(repeating: GroupSums())
                    var q = p
                    while q < groupEnd {
                        if q & (chunkWidth - 1) == 0 && q &+ chunkWidth <= groupEnd {
                            (lanes, partials, q) = smallColumnChunks(block, from: q, to: groupEnd, limit: limit, plan: plan,
                                                                     (lanes, partials), Shape.self)
                            if q == groupEnd { break }
                        }
                        // A chunk with a large or non-finite lane, or the row ends' last positions:
                        // one position the general way, added where `smallColumnChunks` would add it.
                        let (raw, valid) = block.load(q, limit: limit)
                        _ = lanes.add(raw, valid, plan: plan, group: &partials[q & (chunkWidth - 1)], Shape.self)
                        q &+= 1
                    }
                    states[group].lanes = lanes
                    for lane in 0..<chunkWidth { states[group].wide[lane].add(partials[lane], plan: plan) }
                    if groupEnd % LaneStats.blockLength == 0 || groupEnd == end { states[group].flushCounts() }
                }
                p = groupEnd
            }
            for group in 0..<groups {
                for lane in 0..<chunkWidth {
                    // No token criterion and no LN-TRM criterion reaches the column scan.
                    let summary = states[group].summary(lane)
                    _ = decideRow(firstRow + group * chunkWidth + lane, summary, BinaryRowStats(), passingTokens: summary.counted,
                                  rejected: rejected, lengthNeutral: { _ in .nan })
                }
            }
        }
    }
}

/// One lane group's whole chunks of positions from `start` (a multiple of eight) while every
/// lane is small: position `p` adds to partial `p mod 8`, as the row scan's lane `p mod 8` does,
/// so each row's sums are the row scan's. A function of its own with the state passed by value
/// and no calls inside, so the state stays in registers; returns where it stopped (a chunk with a
/// large lane is handed back at its first position, or `end` rounded down to a chunk).
func smallColumnChunks<Kind: StreamKind, Shape: ScanShape>(_ block: ColumnBlock<Kind>, from start: Int, to end: Int,
                                                          limit: Lanes, plan: ScanPlan,
                                                          _ state: (LaneStats, ColumnPartials), _ shape: Shape.Type)
    -> (lanes: LaneStats, partials: ColumnPartials, position: Int) {
    var (lanes, partials) = state
    if !Shape.general {
        // A valley scan adds only k3 partials (the others are 0 throughout): fresh ones tell the
        // compiler so, and they leave the loop's registers.
        for lane in 0..<chunkWidth {
            let k3 = partials[lane].k3
            partials[lane] = GroupSums()
            partials[lane].k3 = k3
        }
    }
    var p = start
    while p &+ chunkWidth <= end {
        for lane in 0..<chunkWidth {
            let (raw, valid) = block.load(p &+ lane, limit: limit)
            guard LaneStats.isSmall(raw, valid, plan: plan) else { return (lanes, partials, p &+ lane) }
            lanes.accumulate(ChunkTerms(small: raw, valid: valid), plan: plan, group: &partials[lane], allSmall: true, Shape.self)
        }
        p &+= chunkWidth
    }
    return (lanes, partials, p)
}

extension ColumnLanes {
    /// Moves the float32 counters into the integer counts (every `LaneStats.blockLength` positions).
    mutating func flushCounts() {
        counts.counted &+= SIMD8<Int>(truncatingIfNeeded: SIMD8<Int32>(lanes.counted))
        counts.nonfinite &+= SIMD8<Int>(truncatingIfNeeded: SIMD8<Int32>(lanes.nonfinite))
        counts.nans &+= SIMD8<Int>(truncatingIfNeeded: SIMD8<Int32>(lanes.nans))
        lanes.counted = Lanes()
        lanes.nonfinite = Lanes()
        lanes.nans = Lanes()
    }

    /// Row `lane`'s statistics, with its sums combined over position lanes in the row scan's order.
    func summary(_ lane: Int) -> RowSummary {
        var summary = RowSummary()
        summary.counted = counts.counted[lane]
        summary.nonfinite = counts.nonfinite[lane]
        summary.nans = counts.nans[lane]
        summary.maxValue = lanes.maxValue[lane]
        summary.minValue = lanes.minValue[lane]
        summary.minNonNegative = lanes.minNonNegative[lane]
        summary.maxNonPositive = lanes.maxNonPositive[lane]
        // Row `lane` of each position lane's sums, as the row scan's eight float64 lanes.
        var perPosition = WideSums()
        for position in 0..<chunkWidth {
            let sums = wide[position]
            perPosition.linear[position] = sums.linear[lane]
            perPosition.k2[position] = sums.k2[lane]
            perPosition.k3[position] = sums.k3[lane]
            perPosition.abs[position] = sums.abs[lane]
            perPosition.ratio[position] = sums.ratio[lane]
            perPosition.tv[position] = sums.tv[lane]
            perPosition.chi2[position] = sums.chi2[lane]
            perPosition.raw[position] = sums.raw[lane]
        }
        summary.finishSums(perPosition)
        return summary
    }
}
