// placeholder: replaced by the browser client (issue 8)
export class NotifyClient {}
