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
/// The lane groups' hot state (counts, extremes, current partials) stays in L1 and L2.
let columnTileRows = 1024

/// One lane group's running state across a tile's positions.
struct ColumnLanes {
    var lanes = LaneStats()  // counts and extremes: lane = row
    var wide = InlineArray<8, WideSums>(repeating: WideSums())  // float64 sums per position lane
    var counts = (counted: SIMD8<Int>(), nonfinite: SIMD8<Int>(), nans: SIMD8<Int>())
}

extension MaskScan {
    /// Scans rows `firstRow ..< firstRow + groups * 8` of a column-major batch (`groups * 8` <=
    /// `columnTileRows`) and
    /// decides them. Each position is read for all the tile's rows at once (whole cache lines),
    /// updating every lane group's state, which stays in L1.
    func scanColumns<Kind: StreamKind, Shape: ScanShape>(_ kind: Kind.Type, _ shape: Shape.Type, firstRow: Int, groups: Int,
                                                           rejected: UnsafeMutableBufferPointer<Int>) {
        // Per lane group: the running state, and the float32 partials of the eight position lanes.
        withUnsafeTemporaryAllocation(of: ColumnLanes.self, capacity: groups) { states in
        withUnsafeTemporaryAllocation(of: GroupSums.self, capacity: groups * chunkWidth) { sums in
            sums.initialize(repeating: GroupSums())
            // Each row's positions to read (its length), as float lanes for the validity compare.
            var limits = InlineArray<128, Lanes>(repeating: Lanes())
            var blocks = InlineArray<128, ColumnBlock<Kind>>(repeating: ColumnBlock(batch, firstRow: firstRow))
            var end = 0
            for group in 0..<groups {
                for lane in 0..<chunkWidth {
                    let count = batch.scanCount(firstRow + group * chunkWidth + lane, span: batch.cols)
                    limits[group][lane] = Float(count)
                    end = Swift.max(end, count)
                }
                blocks[group] = ColumnBlock(batch, firstRow: firstRow + group * chunkWidth)
                (states.baseAddress.unsafelyUnwrapped + group).initialize(to: ColumnLanes())
            }
            let plan = self.plan
            var p = 0
            while p < end {
                let tileEnd = Swift.min(end, p + GroupSums.width)
                while p < tileEnd {
                    let lane = p & (chunkWidth - 1)
                    for group in 0..<groups {
                        let (raw, valid) = blocks[group].load(p, limit: limits[group])
                        _ = states[group].lanes.add(raw, valid, plan: plan, group: &sums[group * chunkWidth + lane], Shape.self)
                    }
                    p += 1
                }
                for group in 0..<groups {
                    for lane in 0..<chunkWidth {
                        states[group].wide[lane].add(sums[group * chunkWidth + lane], plan: plan)
                        sums[group * chunkWidth + lane] = GroupSums()
                    }
                    if p % LaneStats.blockLength == 0 || p == end { states[group].flushCounts() }
                }
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
