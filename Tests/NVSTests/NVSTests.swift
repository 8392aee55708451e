import ESPCore
import Foundation
@testable import NVS
import Testing
import TestSupport

@Suite struct NVSCryptoTests {
    @Test func aes256FIPS197Vector() {
        let key = Array(UInt8(0)...UInt8(31))
        guard let aes = AES256(key: key[...]) else { Issue.record("key rejected"); return }
        var block = [UInt8](hexString: "00112233445566778899aabbccddeeff") ?? []
        aes.encrypt(&block, at: 0)
        #expect(block.hexString == "8ea2b7ca516745bfeafc49904b496089")
        aes.decrypt(&block, at: 0)
        #expect(block.hexString == "00112233445566778899aabbccddeeff")
    }

    @Test func xtsNVSEntryVector() {
        // Vector from the spec (§6): eky = 00..1F, tky = 20..3F, relative address 0x40.
        guard let xts = XTSAES256(key: Array(UInt8(0)...UInt8(63))) else { Issue.record("key rejected"); return }
        var entry = [UInt8](hexString: "010101ff000000006b65790000000000000000000000000005ffffffffffffff") ?? []
        xts.process(&entry, offset: 0, count: 32, sector: 0x40)
        #expect(entry.hexString == "6e33528628182731ab2ec05ee1de89532ed4c3dc0721e379e9418609f614c8f4")
        xts.process(&entry, offset: 0, count: 32, sector: 0x40, decrypt: true)
        #expect(entry.hexString == "010101ff000000006b65790000000000000000000000000005ffffffffffffff")
    }

    @Test func keyImageLayout() throws {
        var rng = SeededRandom(seed: 7)
        let keys = NVSKeys.generate(using: &rng)
        let image = keys.image
        #expect(image.count == 4096)
        #expect(Array(image[0..<64]) == keys.bytes)
        #expect(image[64..<68].loadLE(UInt32.self) == CRC32.update(0xFFFF_FFFF, keys.bytes))
        #expect(image[68...].allSatisfy { $0 == 0xFF })
        #expect(try NVSKeys(file: image) == keys)
        var corrupt = image
        corrupt[3] ^= 1
        #expect(throws: NVSError.self) { try NVSKeys(file: corrupt) }
        #expect(throws: NVSError.self) { try NVSKeys(file: [UInt8](repeating: 0xFF, count: 4096)) }
        #expect(throws: NVSError.self) { try NVSKeys(file: [1, 2, 3]) }
    }
}

@Suite struct NVSCSVTests {
    @Test func pythonCSVRules() {
        let recs = CSVReader.records("a,b\r\n# comment\n\n\"x,\"\"y\"\"\",z\nlast,\"multi\nline\"")
        #expect(recs.map { $0.fields.map(\.text) } == [["a", "b"], ["x,\"y\"", "z"], ["last", "multi\nline"]])
        #expect(recs.map(\.line) == [1, 4, 5])
        #expect(recs[1].fields[1].column == 11)
    }

    @Test func errorsPointAtLineAndColumn() {
        let csv = "key,type,encoding,value\nns,namespace,,\nok,data,u8,1\nbad,data,u8,256\n"
        do {
            _ = try NVSGenerator.generate(csv: csv, options: NVSImageOptions(size: 0x3000))
            Issue.record("accepted an out-of-range u8")
        } catch {
            #expect(error.diagnostic.line == 4)
            #expect(error.diagnostic.column == 13)
        }
        let cases: [(String, Int)] = [
            ("key,type,encoding,value\nns,namespace,,\nabcdefghijklmnop,data,u8,1\n", 3),
            ("key,type,encoding,value\nns,namespace,,\nk,data,hex2bin,abc\n", 3),
            ("key,type,encoding,value\nns,namespace,,\nk,data,hex2bin,zz\n", 3),
            ("key,type,encoding,value\nns,namespace,,\nk,data,u16,0x10\n", 3),
            ("key,type,encoding,value\nns,namespace,,\nk,data,float,1\n", 3),
            ("key,type,encoding,value\nk,data,u8,1\n", 2),
            ("key,type,encoding,value\nns,namespace,,\nk,blob,u8,1\n", 3),
            ("key,type,encoding,value\nns,namespace,,\n\nk,data,string," + String(repeating: "s", count: 3968) + "\n", 4),
            ("key,type,encoding,value\nns,namespace,,\nk,data,base64,QUJDR\n", 3),
        ]
        for (text, line) in cases {
            do {
                _ = try NVSGenerator.generate(csv: text, options: NVSImageOptions(size: 0x4000))
                Issue.record("accepted: \(text.prefix(80))")
            } catch {
                #expect(error.diagnostic.line == line, "\(text.prefix(80))")
            }
        }
    }

    @Test func tooSmallPartitionIsATypedError() {
        let big = String(repeating: "ab", count: 3000)
        let csv = "key,type,encoding,value\nns,namespace,,\nk,data,hex2bin,\(big)\nj,data,hex2bin,\(big)\nl,data,hex2bin,\(big)\n"
        #expect(throws: NVSError.self) { _ = try NVSGenerator.generate(csv: csv, options: NVSImageOptions(size: 0x3000)) }
        #expect(throws: NVSError.self) { _ = try NVSGenerator.generate(csv: csv, options: NVSImageOptions(size: 0x1800)) }
        #expect(throws: NVSError.self) { _ = try NVSGenerator.generate(csv: csv, options: NVSImageOptions(size: 0x2000)) }
        #expect((try? NVSGenerator.generate(csv: csv, options: NVSImageOptions(size: 0x4000))) != nil)
    }

    @Test func reopenedNamespaceWarnsLikeTheGenerator() throws {
        let csv = "key,type,encoding,value\nns1,namespace,,\na,data,u8,1\nns2,namespace,,\nb,data,u8,2\nns1,namespace,,\nc,data,u8,3\n"
        let image = try NVSGenerator.generate(csv: csv, options: NVSImageOptions(size: 0x3000))
        #expect(image.warnings.count == 1)
        #expect(image.warnings.first?.line == 6)
        let report = NVSReader.read(image.bytes)
        #expect(report.entries.first { $0.key == "c" }?.namespace == "ns2")
    }
}

@Suite struct NVSReaderTests {
    static let csv = """
        key,type,encoding,value
        storage,namespace,,
        serial,data,string,SN-000123
        count,data,u32,4000000000
        neg,data,i16,-5
        blob,data,hex2bin,\(String(repeating: "a5", count: 5000))
        other,namespace,,
        flag,data,u8,1

        """

    @Test func readsWhatItWrites() throws {
        let image = try NVSGenerator.generate(csv: Self.csv, options: NVSImageOptions(size: 0x5000))
        let report = NVSReader.read(image.bytes)
        #expect(report.problems.isEmpty)
        func value(_ k: String) -> String? { report.entries.first { $0.key == k && $0.type != "blob_data" }?.value }
        #expect(value("serial") == "SN-000123")
        #expect(value("count") == "4000000000")
        #expect(value("neg") == "-5")
        #expect(value("blob") == String(repeating: "a5", count: 5000))
        #expect(report.entries.first { $0.key == "flag" }?.namespace == "other")
        #expect(report.namespaces == ["storage": 1, "other": 2])
    }

    @Test func reportsCorruptionByPageAndEntry() throws {
        let keys = try NVSKeys(raw: Array(UInt8(0)..<64))
        for key in [nil, keys] {
            var bytes = try NVSGenerator.generate(csv: Self.csv, options: NVSImageOptions(size: 0x5000, key: key?.bytes)).bytes
            bytes[64 + 32 * 3 + 10] ^= 0x40      // page 0, entry 3: the item header of `count`
            bytes[64 + 32 * 2 + 3] ^= 0x01       // page 0, entry 2: data of the string `serial` (header at entry 1)
            bytes[4096 + 4] ^= 0x01              // page 1 header (sequence) → header CRC
            bytes[2 * 4096] = 0x12               // page 2: bad state
            let report = NVSReader.read(bytes, keys: key)
            #expect(report.problems.contains { $0.page == 0 && $0.entry == 3 }, "\(report.problems)")
            #expect(report.problems.contains { $0.page == 0 && $0.entry == 1 && $0.message.contains("CRC") }, "\(report.problems)")
            #expect(report.problems.contains { $0.page == 1 && $0.entry == nil && $0.message.contains("CRC") })
            #expect(report.problems.contains { $0.page == 2 && $0.message.contains("state") })
            #expect(report.entries.contains { $0.key == "flag" })
        }
    }

    @Test func fuzzNeverCrashes() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let keys = try NVSKeys(raw: rng.bytes(64))
        let base = try NVSGenerator.generate(csv: Self.csv, options: NVSImageOptions(size: 0x5000)).bytes
        var total = 0
        for i in 0..<300 {
            var bytes: [UInt8]
            switch i % 3 {
            case 0: bytes = rng.bytes(Int.random(in: 0...9000, using: &rng))
            case 1:
                bytes = base
                for _ in 0..<Int.random(in: 1...40, using: &rng) {
                    bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
            default:
                bytes = Array(base.prefix(Int.random(in: 0...base.count, using: &rng)))
            }
            let report = NVSReader.read(bytes, keys: i % 5 == 0 ? keys : nil)
            total += report.entries.count
            // CSV side: arbitrary text through the parser and converter.
            let text = String(decoding: rng.bytes(Int.random(in: 0...300, using: &rng)).map { $0 % 96 + 10 }, as: UTF8.self)
            _ = try? NVSGenerator.generate(csv: "key,type,encoding,value\n" + text, options: NVSImageOptions(size: 0x3000))
        }
        #expect(total > 0, "seed \(seed)")
    }

    @Test func csvAndPerDeviceFuzzNeverCrash() {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let pieces = ["\"", ",", "\n", "\r", "#", "ns", "namespace", "data", "file", "u8", "string", "hex2bin", "base64",
                      "blob_fill(4;0x", "ff)", "-1", "99999999999999999999", "ab", "=", " ", "é", "\u{FEFF}", "k", "id"]
        var parsed = 0
        for _ in 0..<400 {
            var text = ""
            for _ in 0..<Int.random(in: 0...60, using: &rng) { text += pieces[Int.random(in: 0..<pieces.count, using: &rng)] }
            parsed += CSVReader.records(text).count
            _ = try? NVSGenerator.generate(csv: "key,type,encoding,value\nns,namespace,,\n" + text,
                                           options: NVSImageOptions(size: 0x3000, version: Int.random(in: 1...2, using: &rng)))
            if let config = try? NVSPerDevice.config("ns,namespace,\nk,data,u8\ns,data,string\n" + text) {
                if let r = try? NVSPerDevice.devices(config: config, values: "id,k,s\n" + text) {
                    for d in r.devices { _ = try? NVSGenerator.generate(items: NVSCSV.items(d.rows), options: NVSImageOptions(size: 0x3000)) }
                }
            }
        }
        #expect(parsed > 0, "seed \(seed)")
    }
}

@Suite(.serialized) struct NVSDifferentialTests {
    /// Random CSVs through both generators: byte-identical images, plain.
    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)))
    func plainImagesMatchTheOracle() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed)
        let dir = try TestEnvironment.temporaryDirectory("nvs-diff")
        defer { try? FileManager.default.removeItem(at: dir) }
        var compared = 0
        for i in 0..<24 {
            let version = i % 4 == 3 ? 1 : 2
            let csv = try CSVGen.make(&rng, version: version, entries: Int.random(in: 1...(i % 3 == 0 ? 260 : 40), using: &rng),
                                      fileDir: dir, big: i % 2 == 0)
            // Near-full: the smallest size that fits (every other case), else some slack.
            let minimal = try minimalSize(csv.text, version: version)
            let size = i % 2 == 0 ? minimal : minimal + 4096 * Int.random(in: 1...3, using: &rng)
            let ours = try NVSGenerator.generate(csv: csv.text, files: try files(csv.text), options: NVSImageOptions(size: size, version: version)).bytes
            guard let theirs = try NVSOracle.generate(csv: csv.text, size: size, version: version, in: dir) else {
                Issue.record("oracle failed on case \(i), seed \(seed)")
                continue
            }
            if ours != theirs {
                let keep = URL(fileURLWithPath: "/tmp/nvs-mismatch-\(seed)-\(i).csv")
                try? Data(csv.text.utf8).write(to: keep)
                Issue.record("case \(i) (v\(version), size \(size)): \(firstDifference(ours, theirs)); seed \(seed), CSV kept at \(keep.path)")
            }
            // What `show` reads back is what the CSV said.
            let report = NVSReader.read(theirs)
            #expect(report.problems.isEmpty, "case \(i) seed \(seed): \(report.problems.prefix(3))")
            for e in csv.expected {
                let found = report.entries.first { $0.key == e.key && $0.namespace == e.ns && $0.type != "blob_data" }
                #expect(found?.value == e.value, "case \(i) seed \(seed): \(e.ns)/\(e.key)")
            }
            // One page smaller does not fit, for both tools.
            if i % 4 == 0 && minimal > 0x3000 {
                #expect(throws: NVSError.self) {
                    _ = try NVSGenerator.generate(csv: csv.text, files: try files(csv.text),
                                                  options: NVSImageOptions(size: minimal - 4096, version: version))
                }
                #expect(try NVSOracle.generate(csv: csv.text, size: minimal - 4096, version: version, in: dir) == nil)
            }
            compared += 1
        }
        #expect(compared == 24, "seed \(seed)")
    }

    /// Encrypted: byte-identical to `encrypt --inputkey`; espforge decrypts the oracle's output.
    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)))
    func encryptedImagesMatchTheOracle() throws {
        let seed = testSeed()
        var rng = SeededRandom(seed: seed &+ 1)
        let dir = try TestEnvironment.temporaryDirectory("nvs-enc")
        defer { try? FileManager.default.removeItem(at: dir) }
        for i in 0..<10 {
            let version = i % 5 == 4 ? 1 : 2
            let csv = try CSVGen.make(&rng, version: version, entries: Int.random(in: 1...120, using: &rng),
                                      fileDir: dir, big: i % 2 == 1)
            let keys = NVSKeys.generate(using: &rng)
            let size = try minimalSize(csv.text, version: version) + (i % 2) * 4096
            let ours = try NVSGenerator.generate(csv: csv.text, files: try files(csv.text), options: NVSImageOptions(size: size, version: version, key: keys.bytes)).bytes
            guard let theirs = try NVSOracle.generate(csv: csv.text, size: size, version: version, key: keys.bytes, in: dir) else {
                Issue.record("oracle failed on case \(i), seed \(seed)")
                continue
            }
            #expect(ours == theirs, "case \(i): \(firstDifference(ours, theirs)); seed \(seed)")
            let report = NVSReader.read(theirs, keys: keys)
            #expect(report.problems.isEmpty, "case \(i) seed \(seed): \(report.problems.prefix(3))")
            for e in csv.expected {
                let found = report.entries.first { $0.key == e.key && $0.namespace == e.ns && $0.type != "blob_data" }
                #expect(found?.value == e.value, "case \(i) seed \(seed): \(e.ns)/\(e.key)")
            }
            // Without the key the image is unreadable (and says so) rather than crashing.
            if !csv.expected.isEmpty { #expect(!NVSReader.read(theirs).problems.isEmpty) }
        }
    }

    /// Special rows: Wi-Fi extras, read-only sizes, reopened namespaces, empty blobs, quoting.
    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)))
    func quirksMatchTheOracle() throws {
        let dir = try TestEnvironment.temporaryDirectory("nvs-quirks")
        defer { try? FileManager.default.removeItem(at: dir) }
        let cases: [(String, Int, Int)] = [
            ("key,type,encoding,value\nwifi,namespace,,\nsta.ssid,data,string,myssid\nsta.pswd,data,string,secret\n" +
             "ap.ssid,data,string,apname\nap.passwd,data,string,appass12\nap.authmode,data,u8,3\nap.ssid,data,string,again\n", 0x3000, 2),
            ("key,type,encoding,value\nns1,namespace,,\na,data,u8,1\nns2,namespace,,\nb,data,u8,2\nns1,namespace,,\nc,data,i8,-3\n", 0x2000, 2),
            ("key,type,encoding,value\nns,namespace,,\ne,data,hex2bin,\nf,data,base64,\ng,data,string,\n\"q,1\",data,string,\"a \"\"quoted\"\", value\"\n", 0x1000, 1),
            ("key,type,encoding,value\nns,namespace,,\nn,data,u64,  1_000_000 \nb,data,base64,QU JD RA==x\nh,data,hex2bin, ABCD \n", 0x3000, 2),
            ("# header comment\r\nkey,type,encoding,value\r\nns,namespace,,\r\nm,data,string,\"line1\r\nline2\"\r\n\r\nx,data,i64,-9223372036854775808\r\ny,data,u64,18446744073709551615", 0x3000, 2),
        ]
        for (i, (csv, size, version)) in cases.enumerated() {
            let ours = try NVSGenerator.generate(csv: csv, options: NVSImageOptions(size: size, version: version)).bytes
            let theirs = try NVSOracle.generate(csv: csv, size: size, version: version, in: dir)
            #expect(theirs != nil, "quirk case \(i): oracle failed")
            if let theirs { #expect(ours == theirs, "quirk case \(i): \(firstDifference(ours, theirs))") }
        }
    }

    /// The contents of the files named by `file` rows (absolute paths in these tests).
    func files(_ csv: String) throws -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        for row in try NVSCSV.rows(csv) {
            if let p = row.filePath { out[p] = [UInt8](try Data(contentsOf: URL(fileURLWithPath: p))) }
        }
        return out
    }

    /// The smallest multiple of 4096 (from 0x3000) that holds the CSV.
    func minimalSize(_ csv: String, version: Int) throws -> Int {
        var size = 0x3000
        while size < 0x100000 {
            do {
                _ = try NVSGenerator.generate(csv: csv, files: try files(csv), options: NVSImageOptions(size: size, version: version))
                return size
            } catch NVSError.partitionTooSmall { size += 4096 }
        }
        return size
    }
}
