// Tests read Kafka with their own kafkajs consumers too (read_committed checks of outputs):
// they get the runtime's correction of kafkajs's aborted-transaction filter, whatever a
// test file imports first. See runtime/pipe/kafka/kafkajs-fixes.ts.
import '../runtime/pipe/kafka/kafkajs-fixes.ts'
