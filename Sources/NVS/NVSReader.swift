import ESPCore

/// What `nvs show` reports: pages, entries with their values, and every problem found.
public struct NVSReport: Sendable, Codable, Equatable {
    public struct Page: Sendable, Codable, Equatable {
        public var index: Int
        public var offset: Int
        /// active, full, freeing, corrupt, invalid, empty (erased), or unknown(0x…).
        public var state: String
        public var sequence: UInt32?
        public var version: Int?
        public var headerCRCValid: Bool?
        public var usedEntries: Int
    }

    public struct Entry: Sendable, Codable, Equatable {
        public var page: Int
        public var entry: Int
        public var namespace: String
        public var namespaceIndex: Int
        public var key: String
        public var type: String
        /// Decimal for integers, text for strings, lower-case hex for blobs.
        public var value: String
        /// Value size in bytes for strings and blobs (strings without their NUL).
        public var size: Int?
        /// Blob chunk index, for blob_data entries.
        public var chunk: Int?
        public var problems: [String]?
    }

    public struct Problem: Sendable, Codable, Equatable {
        public var page: Int
        public var entry: Int?
        public var message: String
    }

    public var size: Int
    public var encrypted: Bool
    public var pages: [Page]
    /// Namespace definitions are listed under `namespaces`, not here.
    public var entries: [Entry]
    public var namespaces: [String: Int]
    public var problems: [Problem]
}

/// Reads NVS images of any provenance, tolerating arbitrary bytes: problems are reported, never thrown.
public enum NVSReader {
    public static func read(_ image: [UInt8], keys: NVSKeys? = nil) -> NVSReport {
        let cipher = keys.flatMap { XTSAES256(key: $0.bytes) }
        var pages: [NVSReport.Page] = []
        var problems: [NVSReport.Problem] = []
        var namespaces: [String: Int] = [:]
        var namespaceNames: [Int: String] = [:]

        struct Raw {
            var page: Int, entry: Int, header: [UInt8], data: [UInt8], problems: [String]
        }
        var raws: [Raw] = []

        let pageCount = image.count / NVSFormat.pageSize
        if image.count % NVSFormat.pageSize != 0 {
            problems.append(.init(page: pageCount, entry: nil,
                                  message: "the image size \(image.count) is not a multiple of 4096; the last \(image.count % NVSFormat.pageSize) bytes are ignored"))
        }
        for p in 0..<pageCount {
            let base = p * NVSFormat.pageSize
            let page = Array(image[base..<(base + NVSFormat.pageSize)])
            let stateRaw = page[0..<4].loadLE(UInt32.self)
            if page.allSatisfy({ $0 == 0xFF }) {
                pages.append(.init(index: p, offset: base, state: "empty", sequence: nil, version: nil,
                                   headerCRCValid: nil, usedEntries: 0))
                continue
            }
            let stateName: String
            if let s = NVSFormat.PageState(rawValue: stateRaw) {
                switch s {
                case .uninitialized: stateName = "uninitialized"
                case .active: stateName = "active"
                case .full: stateName = "full"
                case .freeing: stateName = "freeing"
                case .corrupt: stateName = "corrupt"
                case .invalid: stateName = "invalid"
                }
            } else {
                stateName = "unknown(\(NumberParsing.hex(stateRaw)))"
            }
            let crcOK = page[28..<32].loadLE(UInt32.self) == NVSFormat.crc(page[4..<28])
            if NVSFormat.PageState(rawValue: stateRaw) == nil {
                problems.append(.init(page: p, entry: nil, message: "bad page state \(NumberParsing.hex(stateRaw))"))
            } else if stateRaw == NVSFormat.PageState.corrupt.rawValue || stateRaw == NVSFormat.PageState.invalid.rawValue {
                problems.append(.init(page: p, entry: nil, message: "page is marked \(stateName)"))
            }
            if !crcOK { problems.append(.init(page: p, entry: nil, message: "page header CRC mismatch")) }
            let version = page[8]
            if version != 0xFE && version != 0xFF {
                problems.append(.init(page: p, entry: nil, message: "unknown page version byte 0x\(String(version, radix: 16))"))
            }
            var used = 0
            var e = 0
            while e < NVSFormat.entriesPerPage {
                let st = (page[32 + (2 * e) / 8] >> UInt8((2 * e) & 7)) & 0b11
                if st == 0b11 || st == 0b00 { e += 1; continue }  // empty or erased
                if st == 0b01 {
                    problems.append(.init(page: p, entry: e, message: "illegal entry state 0b01 in the bitmap"))
                    e += 1
                    continue
                }
                used += 1
                var header = entryBytes(page, e)
                if let cipher { decrypt(&header, cipher, page: p, entry: e) }
                var entryProblems: [String] = []
                if NVSFormat.itemCRC(header[0..<32]) != header[4..<8].loadLE(UInt32.self) {
                    entryProblems.append("item header CRC mismatch")
                }
                let type = NVSFormat.ItemType(rawValue: header[1])
                var span = Int(header[2])
                var data: [UInt8] = []
                if type == .string || type == .blob || type == .blobData {
                    if span < 1 || e + span > NVSFormat.entriesPerPage {
                        entryProblems.append("span \(span) runs past the end of the page")
                        span = 1
                    } else {
                        for d in 1..<max(span, 1) {
                            var chunk = entryBytes(page, e + d)
                            let dst = (page[32 + (2 * (e + d)) / 8] >> UInt8((2 * (e + d)) & 7)) & 0b11
                            if dst != 0b10 { entryProblems.append("data entry \(e + d) is not marked written") }
                            if let cipher { decrypt(&chunk, cipher, page: p, entry: e + d) }
                            data += chunk
                        }
                    }
                } else if span != 1 {
                    entryProblems.append("span \(span) for a fixed-size item")
                    span = 1
                }
                if type == nil { entryProblems.append("unknown item type 0x\(String(header[1], radix: 16))") }
                raws.append(Raw(page: p, entry: e, header: header, data: data, problems: entryProblems))
                e += max(span, 1)
            }
            pages.append(.init(index: p, offset: base, state: stateName, sequence: page[4..<8].loadLE(UInt32.self),
                               version: version == 0xFE ? 2 : (version == 0xFF ? 1 : nil),
                               headerCRCValid: crcOK, usedEntries: used))
        }

        // Namespace definitions first, so entries can name their namespace wherever they are.
        for r in raws where r.header[0] == 0 && r.header[1] == NVSFormat.ItemType.u8.rawValue && r.problems.isEmpty {
            let name = keyString(r.header)
            namespaces[name] = Int(r.header[24])
            namespaceNames[Int(r.header[24])] = name
        }

        // Blob chunks by (namespace, key, chunk index); the first one found wins.
        var chunks: [ChunkKey: Int] = [:]
        for (i, r) in raws.enumerated() where r.header[1] == NVSFormat.ItemType.blobData.rawValue {
            let k = ChunkKey(ns: r.header[0], key: Array(r.header[8..<24]), chunk: r.header[3])
            if chunks[k] == nil { chunks[k] = i }
        }

        var entries: [NVSReport.Entry] = []
        for r in raws {
            let h = r.header
            if h[0] == 0 && h[1] == NVSFormat.ItemType.u8.rawValue && r.problems.isEmpty { continue }
            var probs = r.problems
            let ns = Int(h[0])
            let type = NVSFormat.ItemType(rawValue: h[1])
            var value = ""
            var size: Int?
            var chunk: Int?
            switch type {
            case .u8: value = String(h[24])
            case .i8: value = String(Int8(bitPattern: h[24]))
            case .u16: value = String(h[24..<26].loadLE(UInt16.self))
            case .i16: value = String(Int16(bitPattern: h[24..<26].loadLE(UInt16.self)))
            case .u32: value = String(h[24..<28].loadLE(UInt32.self))
            case .i32: value = String(Int32(bitPattern: h[24..<28].loadLE(UInt32.self)))
            case .u64: value = String(h[24..<32].loadLE(UInt64.self))
            case .i64: value = String(Int64(bitPattern: h[24..<32].loadLE(UInt64.self)))
            case .string, .blob, .blobData:
                let n = Int(h[24..<26].loadLE(UInt16.self))
                var bytes: [UInt8]
                if n > r.data.count {
                    probs.append("size \(n) exceeds the \(r.data.count) bytes of its data entries")
                    bytes = r.data
                } else {
                    bytes = Array(r.data[0..<n])
                    if NVSFormat.crc(bytes) != h[28..<32].loadLE(UInt32.self) { probs.append("data CRC mismatch") }
                }
                if type == .blobData { chunk = Int(h[3]) }
                if type == .string {
                    if bytes.last == 0 { bytes.removeLast() } else { probs.append("string is not NUL-terminated") }
                    value = String(validating: bytes, as: UTF8.self) ?? ("hex:" + bytes.hexString)
                } else {
                    value = bytes.hexString
                }
                size = bytes.count
            case .blobIndex:
                let total = Int(h[24..<28].loadLE(UInt32.self))
                let count = Int(h[28]), start = Int(h[29])
                // Gather the chunks of this blob from every page.
                var assembled: [UInt8] = []
                var ok = true
                for c in start..<(start + count) {
                    guard let at = chunks[ChunkKey(ns: h[0], key: Array(h[8..<24]), chunk: UInt8(truncatingIfNeeded: c))] else {
                        probs.append("chunk \(c) of \(count) is missing")
                        ok = false
                        break
                    }
                    let part = raws[at]
                    let n = min(Int(part.header[24..<26].loadLE(UInt16.self)), part.data.count)
                    assembled += part.data[0..<n]
                }
                if ok && assembled.count != total {
                    probs.append("chunks hold \(assembled.count) bytes, index says \(total)")
                }
                value = assembled.hexString
                size = total
            case nil:
                value = "hex:" + Array(h[24..<32]).hexString
            }
            let typeName = type?.name ?? "0x" + String(h[1], radix: 16)
            let nsName: String
            if ns == 0 { nsName = "" } else if let n = namespaceNames[ns] { nsName = n } else {
                nsName = "#\(ns)"
                probs.append("namespace index \(ns) is not defined")
            }
            for m in probs { problems.append(.init(page: r.page, entry: r.entry, message: "`\(keyString(h))`: \(m)")) }
            entries.append(.init(page: r.page, entry: r.entry, namespace: nsName, namespaceIndex: ns, key: keyString(h),
                                 type: typeName, value: value, size: size, chunk: chunk,
                                 problems: probs.isEmpty ? nil : probs))
        }
        return NVSReport(size: image.count, encrypted: cipher != nil, pages: pages, entries: entries,
                         namespaces: namespaces, problems: problems)
    }

    struct ChunkKey: Hashable {
        var ns: UInt8
        var key: [UInt8]
        var chunk: UInt8
    }

    static func entryBytes(_ page: [UInt8], _ e: Int) -> [UInt8] {
        let o = NVSFormat.firstEntryOffset + e * NVSFormat.entrySize
        return Array(page[o..<(o + NVSFormat.entrySize)])
    }

    static func decrypt(_ entry: inout [UInt8], _ cipher: XTSAES256, page: Int, entry e: Int) {
        let address = UInt64(page * NVSFormat.pageSize + NVSFormat.firstEntryOffset + e * NVSFormat.entrySize)
        cipher.process(&entry, offset: 0, count: NVSFormat.entrySize, sector: address, decrypt: true)
    }

    static func keyString(_ header: [UInt8]) -> String {
        let k = header[8..<24].prefix { $0 != 0 }
        return String(decoding: k, as: UTF8.self)
    }
}
