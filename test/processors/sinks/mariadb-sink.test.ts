/**
 * The mariadb sink against a real server: the recovery property with real SIGKILLs, a poison
 * row, options refused at start (fixtures/sql-sink-suite.ts), and a private server restarted
 * under a running pipeline watched by the monitor.
 */
import { requireService } from '../../support/services.ts'
import { sqlSinkTests, storeRestartTest } from './fixtures/sql-sink-suite.ts'

const service = await requireService('mariadb')
const nats = await requireService('nats')

sqlSinkTests('mariadb', service)
storeRestartTest('mariadb', nats, 23306)
