/** Why a file-set job refuses to go on: typed, with the object and both ETags in `context`. */
import { WeirError } from '../../../index.ts'

/**
 * An object the job pinned has another ETag now (it was rewritten under the same run id).
 * Not retriable: rerunning the same run id goes on only once the object is back as pinned;
 * new content belongs to a new run id.
 */
export class FileSetObjectChangedError extends WeirError {
  constructor(readonly run: string, readonly object: string, readonly pinned: string, readonly current: string, where: string, stage?: string, partition?: number) {
    super('WEIR_FILESET_OBJECT_CHANGED', `file set job ${run}: object ${object} in ${where} changed since the job pinned it (pinned ETag ${pinned}, current ETag ${current}); the job stops: restore the object to rerun this run id, or give the new content a new run id`, { run, object, pinned, current, stage, partition }, { retriable: false })
    this.name = 'FileSetObjectChangedError'
  }
}

/** An object the job pinned is gone. Not retriable, as FileSetObjectChangedError. */
export class FileSetObjectVanishedError extends WeirError {
  constructor(readonly run: string, readonly object: string, readonly pinned: string, where: string, stage?: string, partition?: number) {
    super('WEIR_FILESET_OBJECT_VANISHED', `file set job ${run}: object ${object} in ${where} disappeared since the job pinned it (pinned ETag ${pinned}); the job stops: restore the object to rerun this run id, or start a new run id`, { run, object, pinned, current: null, stage, partition }, { retriable: false })
    this.name = 'FileSetObjectVanishedError'
  }
}

/** A new run id was given while this actor's previous job is unfinished (`onUnfinished: 'refuse'`, the default). */
export class FileSetJobUnfinishedError extends WeirError {
  constructor(readonly run: string, readonly unfinished: string, status: string, stage: string, partition: number) {
    super('WEIR_FILESET_JOB_UNFINISHED', `stage ${stage} partition ${partition}: run ${run} cannot start: job ${unfinished} is ${status}, not finished; rerun it (run=${unfinished}) to finish it, or set onUnfinished: 'abandon' to leave it`, { run, unfinished, status, stage, partition }, { retriable: false })
    this.name = 'FileSetJobUnfinishedError'
  }
}
