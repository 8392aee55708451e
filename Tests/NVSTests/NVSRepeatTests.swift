import ESPCore
import Foundation
import NVS
import Testing
import TestSupport

/// The mass-manufacturing `REPEAT` tag (ESP-IDF tools/mass_mfg/mfg_gen.py and its README, read for
/// facts; checked by hand to give byte-identical images with mfg_gen run on ESP-IDF's README example
/// and esp-idf-nvs-partition-gen 0.3.0): a config line `key,type,encoding,REPEAT` makes every device
/// take the value the first device row of the values CSV gives that key; later rows leave the cell
/// empty, and whatever they hold there is ignored (mfg_gen overwrites it with the first row's value).
@Suite struct NVSRepeatTests {
    // ESP-IDF's README example, with a non-empty later cell that must be ignored.
    static let config = """
        app,namespace,
        firmware_key,data,hex2bin
        serial_no,data,string,REPEAT
        device_no,data,i32

        """
    static let values = """
        id,firmware_key,serial_no,device_no
        1,1a2b3c4d5e6faabb,A1,101
        2,1a2b3c4d5e6fccdd,,102
        3,1a2b3c4d5e6feeff,ZZ,103

        """

    @Test func everyDeviceTakesTheFirstRowsValue() throws {
        let config = try NVSPerDevice.config(Self.config)
        #expect(config.map(\.repeatsFirstDevice) == [false, false, true, false])
        #expect(config[2].value == nil)
        let (devices, failures) = try NVSPerDevice.devices(config: config, values: Self.values)
        #expect(failures.isEmpty)
        #expect(devices.map(\.id) == ["1", "2", "3"])
        for d in devices {
            let serial = try #require(d.rows.first { $0.key == "serial_no" })
            #expect(serial.value == "A1")
            #expect(serial.valueAt == CSVLocation(line: 2, column: 20))
        }
        #expect(devices.map { $0.rows.first { $0.key == "device_no" }?.value } == ["101", "102", "103"])
    }

    @Test func repeatErrors() throws {
        let config = try NVSPerDevice.config(Self.config)
        // The first device row must give the value.
        let noFirst = "id,firmware_key,serial_no,device_no\n1,00,,101\n2,01,A1,102\n"
        #expect(throws: NVSError.csv("REPEAT key `serial_no` has no value in the first device row", line: 2, column: 6,
                                     hint: "a REPEAT key's value is given once, in the first device row; later rows leave it empty")) {
            try NVSPerDevice.devices(config: config, values: noFirst)
        }
        // A REPEAT key needs its column (mfg_gen requires every config key in the values header).
        do {
            _ = try NVSPerDevice.devices(config: config, values: "id,firmware_key,device_no\n1,00,101\n")
            Issue.record("expected an error")
        } catch {
            #expect(error.diagnostic.message.contains("no column `serial_no`") && error.diagnostic.line == 1)
        }
        // Namespaces never repeat, and a plain constant stays a constant.
        let plain = try NVSPerDevice.config("ns,namespace,REPEAT\nk,data,u8,7\n")
        #expect(plain.map(\.repeatsFirstDevice) == [false, false] && plain[1].value == "7")
    }

    /// Each device image equals nvs_partition_gen's output for the CSV mfg_gen writes for it.
    @Test(.enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)))
    func imagesMatchTheOracle() throws {
        let dir = try TestEnvironment.temporaryDirectory("nvs-repeat")
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data(Self.config.utf8).write(to: dir.appendingPathComponent("config.csv"))
        try Data(Self.values.utf8).write(to: dir.appendingPathComponent("values.csv"))
        let outdir = dir.appendingPathComponent("out").path
        let r = try Espforge.run(["nvs", "generate", dir.appendingPathComponent("config.csv").path,
                                  "--values", dir.appendingPathComponent("values.csv").path, "--size", "0x3000", "--outdir", outdir])
        #expect(r.status == 0, "\(r.err)")
        for (id, key, number) in [("1", "1a2b3c4d5e6faabb", 101), ("2", "1a2b3c4d5e6fccdd", 102), ("3", "1a2b3c4d5e6feeff", 103)] {
            let csv = """
                key,type,encoding,value
                app,namespace,,
                firmware_key,data,hex2bin,\(key)
                serial_no,data,string,A1
                device_no,data,i32,\(number)

                """
            let ours = [UInt8](FileManager.default.contents(atPath: outdir + "/\(id).bin") ?? Data())
            let theirs = try NVSOracle.generate(csv: csv, size: 0x3000, version: 2, in: dir)
            #expect(theirs != nil && ours == theirs, "device \(id): \(firstDifference(ours, theirs ?? []))")
        }
    }

    @Test func badRepeatValueFailsEveryDeviceAndSaysWhere() throws {
        let dir = try TestEnvironment.temporaryDirectory("nvs-repeat-bad")
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = Self.config.replacingOccurrences(of: "serial_no,data,string", with: "serial_no,data,u8")
        try Data(config.utf8).write(to: dir.appendingPathComponent("config.csv"))
        try Data(Self.values.utf8).write(to: dir.appendingPathComponent("values.csv"))
        let outdir = dir.appendingPathComponent("out").path
        let r = try Espforge.run(["nvs", "generate", dir.appendingPathComponent("config.csv").path,
                                  "--values", dir.appendingPathComponent("values.csv").path, "--size", "0x3000", "--outdir", outdir])
        #expect(r.status == 1)
        #expect(r.err.contains("line 2, column 20"), "\(r.err)")
        #expect(r.err.contains("the REPEAT value on line 2"), "\(r.err)")
        for id in ["1", "2", "3"] { #expect(!FileManager.default.fileExists(atPath: outdir + "/\(id).bin")) }
    }
}
