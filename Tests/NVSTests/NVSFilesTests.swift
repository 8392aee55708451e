import ESPCore
import Foundation
import NVS
import Testing
import TestSupport

/// `NVSFiles` (what `nvs generate` does with files) and `NVSReport.text` (what `nvs show` prints).
@Suite("NVS files (library)")
struct NVSFilesTests {
    @Test("a CSV with a file row relative to the CSV's folder; encrypted with fresh keys it decrypts back")
    func singleImage() throws {
        let dir = try TestEnvironment.temporaryDirectory("nvs-files")
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data([1, 2, 3, 4, 5]).write(to: dir.appendingPathComponent("blob.bin"))
        let csv = dir.appendingPathComponent("nvs.csv").path
        try "key,type,encoding,value\nstorage,namespace,,\ncount,data,u8,7\nname,data,string,line-1\ncert,file,binary,blob.bin\n"
            .write(toFile: csv, atomically: true, encoding: .utf8)
        let (plain, none) = try NVSFiles.generate(csvPath: csv, size: 0x6000)
        #expect(none == nil && plain.bytes.count == 0x6000)
        let report = NVSReader.read(plain.bytes)
        #expect(report.problems.isEmpty)
        #expect(report.entries.first { $0.key == "count" }?.value == "7")
        #expect(report.entries.first { $0.key == "cert" && $0.type != "blob_data" }?.size == 5)
        let text = report.text(name: "nvs.bin", keysGiven: false)
        #expect(text.hasPrefix("nvs.bin: 24576 bytes, 6 page(s), 1 in use\n"))
        #expect(text.contains("storage    name   string      \"line-1\"\n"))

        let (encrypted, fresh) = try NVSFiles.generate(csvPath: csv, size: 0x6000, keys: .fresh)
        let keys = try #require(fresh)
        #expect(encrypted.bytes != plain.bytes)
        #expect(NVSReader.read(encrypted.bytes, keys: keys).entries.map(\.value) == report.entries.map(\.value))
        let undecrypted = NVSReader.read(encrypted.bytes).text(name: "e.bin", keysGiven: false)
        #expect(undecrypted.contains("hint: if the image is encrypted, pass --keys KEYS.bin"))
        // The key file form round-trips through NVSKeys.load.
        let keyPath = dir.appendingPathComponent("keys.bin").path
        try AtomicFile.write(keys.image, to: keyPath)
        #expect(try NVSKeys.load(keyPath) == keys)
        #expect(try NVSFiles.generate(csvPath: csv, size: 0x6000, keys: .file(keyPath)).image.bytes.count == 0x6000)
    }

    @Test("a missing file row names the file and the CSV")
    func missingFile() throws {
        let dir = try TestEnvironment.temporaryDirectory("nvs-files")
        defer { try? FileManager.default.removeItem(at: dir) }
        let csv = dir.appendingPathComponent("nvs.csv").path
        try "key,type,encoding,value\nstorage,namespace,,\ncert,file,binary,nope.bin\n".write(toFile: csv, atomically: true, encoding: .utf8)
        do {
            _ = try NVSFiles.generate(csvPath: csv, size: 0x3000)
            Issue.record("generated with a missing file")
        } catch let e as FileContextError {
            #expect(e.file == csv)
            #expect(e.diagnostic.message.contains("cannot read file `\(dir.path)/nope.bin`"))
            #expect(e.diagnostic.line == 3)
        }
    }

    @Test("per-device: one image (and 0600 key image) per good row; a bad row fails alone, by line")
    func perDevice() throws {
        let dir = try TestEnvironment.temporaryDirectory("nvs-batch")
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = dir.appendingPathComponent("config.csv").path, values = dir.appendingPathComponent("values.csv").path
        try "storage,namespace,\nserial,data,string\nslot,data,u8\n".write(toFile: config, atomically: true, encoding: .utf8)
        try "id,serial,slot\nd1,SN-1,1\nd2,SN-2,999\nd3,SN-3,3\n".write(toFile: values, atomically: true, encoding: .utf8)
        let out = dir.appendingPathComponent("out").path
        let r = try NVSFiles.generatePerDevice(configPath: config, valuesPath: values, outdir: out, size: 0x3000, encrypt: true)
        #expect(r.written == 2 && r.total == 3 && r.failures.count == 1)
        #expect(r.failures[0].diagnostic.line == 3)
        let files = Set(try FileManager.default.contentsOfDirectory(atPath: out))
        #expect(files == ["d1.bin", "d1-keys.bin", "d3.bin", "d3-keys.bin"])
        let keys = try NVSKeys.load(out + "/d3-keys.bin")
        let image = try BoundedFile.read(out + "/d3.bin", limit: .nvsPartition)
        #expect(NVSReader.read(image, keys: keys).entries.contains { $0.key == "serial" && $0.value == "SN-3" })
        let mode = try FileManager.default.attributesOfItem(atPath: out + "/d1-keys.bin")[.posixPermissions] as? Int
        #expect(mode == 0o600)
    }
}
