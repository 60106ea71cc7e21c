/// Column-major batches (the row stride is 1, as in `x.T` of a `[T, B]` array): reading one row
/// at a time would touch a new cache line for every token. Here eight rows are the eight lanes
/// and the scan walks the positions, loading eight neighbouring rows at once.
///
/// Each row's statistics are accumulated exactly as the row scan does: position `p` feeds
/// position lane `p mod 8`, float32 partials over groups of 64 positions, float64 lanes combined
/// by the same tree. So the results are bit-identical to every other layout.

/// Whether the column scan serves a batch: padded float32 streams and a byte mask (or none), all
/// with row stride 1, at least one full group of eight rows, and positions countable exactly in
/// float32 lanes.
func columnScanServes(_ batch: Batch) -> Bool {
    guard batch.layout == .padded, batch.rows >= chunkWidth, batch.cols < 1 << 24 else { return false }
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

/// Rows per column tile: eight lane groups of eight rows. A tile walks its positions 64 at a time
/// and lets each lane group take those 64 positions in turn, so every cache line of the inputs is
/// used whole while it is loaded (one line holds sixteen rows' float32 values at one position).
let columnTileRows = 64

/// One lane group's running state across a tile's positions.
struct ColumnLanes {
    var lanes = LaneStats()  // counts and extremes: lane = row
    var wide = InlineArray<8, LaneStats>(repeating: LaneStats())  // float64 sums per position lane
    var counts = (counted: SIMD8<Int>(), nonfinite: SIMD8<Int>(), nans: SIMD8<Int>())
}

extension MaskScan {
    /// Scans rows `firstRow ..< firstRow + groups * 8` of a column-major batch (`groups` <= 8) and
    /// decides them.
    func scanColumns<Kind: StreamKind, Shape: ScanShape>(_ kind: Kind.Type, _ shape: Shape.Type, firstRow: Int, groups: Int,
                                                           rejected: UnsafeMutableBufferPointer<Int>) {
        withUnsafeTemporaryAllocation(of: ColumnLanes.self, capacity: groups) { states in
            // Each row's positions to read (its length), as float lanes for the validity compare.
            var limits = InlineArray<8, Lanes>(repeating: Lanes())
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
                let tileEnd = Swift.min(end, p + GroupSums.width)
                for group in 0..<groups {
                    let block = ColumnBlock<Kind>(batch, firstRow: firstRow + group * chunkWidth)
                    var sums = InlineArray<8, GroupSums>(repeating: GroupSums())  // float32 partials per position lane
                    var position = p
                    while position < tileEnd {
                        let (raw, valid) = block.load(position, limit: limits[group])
                        _ = states[group].lanes.add(raw, valid, plan: plan, group: &sums[position & (chunkWidth - 1)], Shape.self)
                        position += 1
                    }
                    for lane in 0..<chunkWidth { states[group].wide[lane].flush(sums[lane], plan: plan) }
                }
                p = tileEnd
                if p % LaneStats.blockLength == 0 || p == end {
                    for group in 0..<groups { states[group].flushCounts() }
                }
            }
            for group in 0..<groups {
                for lane in 0..<chunkWidth {
                    _ = decideRow(firstRow + group * chunkWidth + lane, states[group].summary(lane), rejected: rejected)
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
        func total(_ sum: (LaneStats) -> SIMD8<Double>) -> Double {
            var perPosition = SIMD8<Double>()
            for position in 0..<chunkWidth { perPosition[position] = sum(wide[position])[lane] }
            return treeSum(perPosition)
        }
        summary.sums = (total { $0.sums.0 }, total { $0.sums.1 }, total { $0.sums.2 },
                        total { $0.sums.3 }, total { $0.sums.4 }, total { $0.sums.5 })
        return summary
    }
}
