/**
 * The researcher's panels in a study server's JupyterLab: a study banner, the catalog of granted
 * views, "My release requests" (withdraw, resubmit) and "Request release" on a cell's output.
 *
 * Everything shown comes from the study server's workbench/api routes (workbench/hub/lab_api.py),
 * which read the policy, the catalog snapshot the hub wrote at spawn and the airlock. Nothing here
 * decides anything: a release request is made by the kernel, which holds the output, so the
 * airlock's record links it to the cells that produced it.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Dialog, InputDialog, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';
import { ServerConnection } from '@jupyterlab/services';
import { listIcon, tableRowsIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

const API = 'workbench/api';
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$/;

interface IStudy {
  study: string;
  title: string;
  user: string;
  expires: string;
  days_left: number;
  visibility: { [view: string]: string };
  views: string[];
}

interface IColumn {
  name: string;
  type: string;
  description: string;
  sensitivity: string;
  plaintext: boolean;
  role: string | null;
}

interface IHolderFacts {
  holder: string;
  tables: string[];
  quality_min: number;
  certificates: { [status: string]: number };
}

interface IView {
  id: string;
  title: string;
  description: string;
  columns: IColumn[];
  holders: IHolderFacts[];
  visibility: string;
}

interface IComment {
  who: string;
  action: string;
  text: string;
  at: string;
}

interface IFinding {
  rule: string;
  verdict: string;
  cells: number;
  message: string;
}

interface IRequest {
  id: string;
  name: string;
  description: string;
  view: string | null;
  kind: string;
  state: string;
  verdict: string;
  created_at: string;
  approvals: string[];
  approvals_needed: number;
  findings: IFinding[];
  comments: IComment[];
  mine: boolean;
  justification?: string;
}

/** A workbench/api call; an error reply is thrown with its message (one line, no trace). */
async function api<T>(path: string, init: RequestInit = {}): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, API, path);
  const response = await ServerConnection.makeRequest(url, init, settings);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const message = body?.error?.message ?? `HTTP ${response.status}`;
    throw new Error(message);
  }
  return body as T;
}

/** An element with a class and text (text is always set as text: nothing here is HTML). */
function el(
  tag: string,
  className = '',
  text = '',
  parent?: HTMLElement
): HTMLElement {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text) {
    node.textContent = text;
  }
  parent?.appendChild(node);
  return node;
}

/** The study banner: which study this server is, how its views are visible, when it expires. */
class StudyBanner extends Widget {
  constructor() {
    super();
    this.id = 'workbench-banner';
    this.addClass('wb-Banner');
  }

  async refresh(): Promise<IStudy | null> {
    try {
      const study = await api<IStudy>('study');
      this.render(study);
      return study;
    } catch (error) {
      this.node.textContent = `Study unknown: ${(error as Error).message}`;
      this.addClass('wb-mod-warning');
      return null;
    }
  }

  private render(study: IStudy): void {
    this.node.textContent = '';
    el('span', 'wb-Banner-study', study.study, this.node).title = study.title;
    el('span', 'wb-Banner-title', study.title, this.node);
    const levels = Array.from(new Set(Object.values(study.visibility)));
    const visibility = levels.length ? levels.join(' / ') : 'no views granted';
    el('span', 'wb-Banner-visibility', `visibility: ${visibility}`, this.node).title =
      Object.entries(study.visibility)
        .map(([view, level]) => `${view}: ${level}`)
        .join('\n');
    const left = study.days_left;
    const expiry = el(
      'span',
      'wb-Banner-expiry',
      `expires ${study.expires} (${left >= 0 ? `${left} days left` : 'expired'})`,
      this.node
    );
    expiry.classList.toggle('wb-mod-warning', left < 30);
    el('span', 'wb-Banner-user', `signed in as ${study.user}`, this.node);
  }
}

/** The catalog panel: each granted view with its columns, sensitivity, quality, certificates. */
class CatalogPanel extends Widget {
  constructor() {
    super();
    this.id = 'workbench-catalog';
    this.title.icon = tableRowsIcon;
    this.title.caption = 'Study catalog: granted views';
    this.addClass('wb-Panel');
  }

  protected onAfterShow(): void {
    void this.refresh();
  }

  async refresh(): Promise<void> {
    this.node.textContent = '';
    el('h2', '', 'Catalog', this.node);
    try {
      const catalog = await api<{
        as_of: string | null;
        views: IView[];
        unavailable: string | null;
        without_details: string[];
      }>('catalog');
      if (catalog.unavailable) {
        el('p', 'wb-mod-warning', catalog.unavailable, this.node);
      }
      if (!catalog.views.length && !catalog.without_details.length) {
        el('p', '', 'This study is granted no views.', this.node);
      }
      for (const view of catalog.views) {
        this.renderView(view);
      }
      for (const id of catalog.without_details) {
        el('p', 'wb-Catalog-pending', `${id}: granted, no details yet (granted since this ` +
          'server started: restart it from the hub home page)', this.node);
      }
      if (catalog.as_of) {
        el('p', 'wb-Panel-note', `catalog as of ${catalog.as_of}`, this.node);
      }
    } catch (error) {
      el('p', 'wb-mod-warning', (error as Error).message, this.node);
    }
  }

  private renderView(view: IView): void {
    const box = el('details', 'wb-Catalog-view', '', this.node);
    box.dataset.view = view.id;
    const summary = el('summary', '', '', box);
    el('strong', '', view.id, summary);
    el('span', 'wb-Catalog-title', ` ${view.title}`, summary);
    el('span', `wb-Badge wb-Badge-${view.visibility}`, view.visibility, summary);
    el('p', '', view.description, box);
    const facts = el('ul', 'wb-Catalog-facts', '', box);
    for (const holder of view.holders) {
      const item = el('li', '', '', facts);
      item.dataset.holder = holder.holder;
      el('strong', '', holder.holder, item).title = holder.tables.join(', ');
      el('span', '', `: ${holder.tables.length} tables, quality ≥ ` +
        `${holder.quality_min.toFixed(2)}, certificates `, item);
      for (const [status, count] of Object.entries(holder.certificates)) {
        el('span', `wb-Cert wb-Cert-${status}`, `${count} ${status} `, item);
      }
    }
    // one line per column, wrapping in a narrow sidebar: name, type, sensitivity, use
    const columns = el('ul', 'wb-Catalog-columns', '', box);
    for (const column of view.columns) {
      const item = el('li', '', '', columns);
      item.dataset.column = column.name;
      item.title = column.description;
      el('code', '', column.name, item);
      el('span', '', ` ${column.type} · `, item);
      el('span', `wb-Sens-${column.sensitivity}`, column.sensitivity, item);
      el('span', '', ` · ${column.plaintext ? 'plaintext' : 'wb.secure only'}` +
        `${column.role ? ` · ${column.role}` : ''}`, item);
    }
  }
}

const OPEN = ['submitted', 'reviewed', 'returned'];
const RESUBMITTABLE = ['returned', 'withdrawn'];

/** "My release requests": state, checks, reviewer comments; withdraw and resubmit. */
class RequestsPanel extends Widget {
  private showAll = false;
  private latest = 0; // refreshes overlap (a cell ran, a button): only the newest one renders

  constructor() {
    super();
    this.id = 'workbench-requests';
    this.title.icon = listIcon;
    this.title.caption = 'My release requests';
    this.addClass('wb-Panel');
  }

  protected onAfterShow(): void {
    void this.refresh();
  }

  async refresh(): Promise<void> {
    if (!this.isVisible) {
      return;
    }
    const call = ++this.latest;
    const node = document.createElement('div');
    el('h2', '', 'My release requests', node);
    const bar = el('div', 'wb-Panel-bar', '', node);
    const reload = el('button', 'jp-mod-styled wb-Refresh', 'Refresh', bar);
    reload.onclick = () => void this.refresh();
    const toggle = el('label', '', '', bar);
    const all = el('input', '', '', toggle) as HTMLInputElement;
    all.type = 'checkbox';
    all.checked = this.showAll;
    all.onchange = () => {
      this.showAll = all.checked;
      void this.refresh();
    };
    toggle.appendChild(document.createTextNode(' whole study'));
    try {
      const listing = await api<{ requests: IRequest[]; more: number }>('requests');
      const shown = listing.requests.filter(r => this.showAll || r.mine);
      if (!shown.length) {
        el('p', '', 'No release requests yet: use "Request release" on an output ' +
          '(right-click it) or wb.release.request(...) in a cell.', node);
      }
      for (const request of shown) {
        this.renderRequest(request, node);
      }
      if (listing.more) {
        el('p', 'wb-Panel-note', `${listing.more} older requests: wb.release.requests()`, node);
      }
    } catch (error) {
      el('p', 'wb-mod-warning', (error as Error).message, node);
    }
    if (call === this.latest) {
      this.node.replaceChildren(...Array.from(node.childNodes));
    }
  }

  private renderRequest(request: IRequest, parent: HTMLElement): void {
    const card = el('div', 'wb-Request', '', parent);
    card.dataset.request = request.id;
    card.dataset.state = request.state;
    const head = el('div', 'wb-Request-head', '', card);
    el('strong', '', request.name, head);
    el('span', `wb-Badge wb-State-${request.state}`, request.state, head);
    el('div', 'wb-Panel-note', `${request.id} · ${request.kind}` +
      `${request.view ? ` of ${request.view}` : ''} · ${request.created_at.slice(0, 16)}`, card);
    el('div', '', request.description, card);
    const checks = `checks: ${request.verdict}`;
    const approvals = ['submitted', 'reviewed'].includes(request.state)
      ? `, approvals ${request.approvals.length} of ${request.approvals_needed}` : '';
    el('div', 'wb-Request-checks', checks + approvals, card);
    if (request.state === 'draft') {
      el('div', 'wb-mod-warning', 'Not sent to the reviewers: fix the output as the failed ' +
        'checks say and request it again.', card);
    }
    for (const finding of request.findings.filter(f => f.verdict === 'fail')) {
      const line = el('div', 'wb-Finding wb-Finding-fail', '', card);
      el('strong', '', finding.rule, line);
      const cells = finding.cells ? ` (${finding.cells} cell(s))` : '';
      line.appendChild(document.createTextNode(`${cells}: ${finding.message}`));
    }
    for (const finding of request.findings.filter(f => f.verdict !== 'fail')) {
      const line = el('details', 'wb-Finding wb-Finding-review', '', card);
      el('summary', '', `for the reviewers: ${finding.rule}`, line);
      el('div', '', finding.message, line);
    }
    if (request.comments.length) {
      const thread = el('div', 'wb-Request-comments', '', card);
      for (const comment of request.comments) {
        const line = el('div', 'wb-Comment', '', thread);
        el('strong', '', `${comment.who} (${comment.action})`, line);
        line.appendChild(document.createTextNode(` ${comment.text}`));
      }
    }
    const actions = el('div', 'wb-Request-actions', '', card);
    if (OPEN.includes(request.state)) {
      const withdraw = el('button', 'jp-mod-styled wb-Withdraw', 'Withdraw', actions);
      withdraw.onclick = () => void this.act(request, 'withdraw');
    }
    if (RESUBMITTABLE.includes(request.state)) {
      const resubmit = el('button', 'jp-mod-styled jp-mod-accept wb-Resubmit', 'Resubmit',
        actions);
      resubmit.onclick = () => void this.act(request, 'resubmit');
    }
  }

  private async act(request: IRequest, action: 'withdraw' | 'resubmit'): Promise<void> {
    const answer = await InputDialog.getText({
      title: `${action === 'withdraw' ? 'Withdraw' : 'Resubmit'} ${request.name}`,
      label: action === 'withdraw'
        ? 'Why (optional; the reviewers read it):'
        : 'What changed or why it should pass now (the reviewers read it):',
      okLabel: action === 'withdraw' ? 'Withdraw' : 'Resubmit'
    });
    if (!answer.button.accept) {
      return;
    }
    try {
      await api(`requests/${encodeURIComponent(request.id)}/${action}`, {
        method: 'POST',
        body: JSON.stringify({ comment: answer.value ?? '' })
      });
    } catch (error) {
      await showErrorMessage(`Could not ${action} ${request.name}`, (error as Error).message);
    }
    await this.refresh();
  }
}

/** The dialog body of "Request release": name, description, justification, view. */
class RequestForm extends Widget {
  constructor(defaultName: string, views: string[]) {
    super();
    this.addClass('wb-RequestForm');
    this.field('name', 'Name (becomes the file name)', defaultName);
    this.field('description', 'What the output shows', '');
    this.field('justification', 'Why it must leave the study', '');
    const label = el('label', '', 'Computed from view', this.node);
    const select = el('select', '', '', label) as HTMLSelectElement;
    select.name = 'view';
    for (const view of ['', ...views]) {
      const option = el('option', '', view || '(none)', select) as HTMLOptionElement;
      option.value = view;
    }
    if (views.length === 1) {
      select.value = views[0];
    }
  }

  private field(name: string, label: string, value: string): void {
    const wrapper = el('label', '', label, this.node);
    const input = el('input', 'jp-mod-styled', '', wrapper) as HTMLInputElement;
    input.name = name;
    input.value = value;
  }

  getValue(): { [name: string]: string } {
    const out: { [name: string]: string } = {};
    this.node.querySelectorAll('input, select').forEach(node => {
      const input = node as HTMLInputElement;
      out[input.name] = input.value.trim();
    });
    return out;
  }
}

/** Python string literal of a text (a JSON string is one). */
function py(text: string): string {
  return JSON.stringify(text);
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'workbench-lab:plugin',
  description: 'Study banner, catalog, release requests and "Request release" on an output.',
  autoStart: true,
  requires: [INotebookTracker],
  activate: (app: JupyterFrontEnd, tracker: INotebookTracker) => {
    const banner = new StudyBanner();
    const catalog = new CatalogPanel();
    const requests = new RequestsPanel();
    app.shell.add(banner, 'header', { rank: 1 });
    app.shell.add(catalog, 'left', { rank: 150 });
    app.shell.add(requests, 'right', { rank: 50 });
    let study: IStudy | null = null;
    void banner.refresh().then(found => (study = found));
    // a cell that called wb.release may have made or changed a request
    NotebookActions.executed.connect((_, { cell }) => {
      if (cell.model.sharedModel.getSource().includes('release')) {
        void requests.refresh();
      }
    });

    app.commands.addCommand('workbench:request-release', {
      label: 'Request release of this output…',
      caption: 'Ask the airlock to release this output: a cell calling wb.release.request is ' +
        'added below and run, so the request is linked to the cell that made the output',
      isEnabled: () => tracker.currentWidget !== null,
      execute: async () => {
        const panel = tracker.currentWidget;
        if (!panel) {
          return;
        }
        // the cell whose output was right-clicked; never another one (the active cell is often
        // the new empty one below, and a request there would name no output)
        const hit = app.contextMenuHitTest(node => node.classList.contains('jp-Cell'));
        const index = panel.content.widgets.findIndex(cell => cell.node === hit);
        const cell = index >= 0 ? panel.content.widgets[index] : null;
        if (!cell || cell.model.type !== 'code') {
          await showErrorMessage('Request release', 'Right-click the output you want released ' +
            '(in a code cell\'s output area), then choose "Request release of this output".');
          return;
        }
        const count = (cell.model as any).executionCount as number | null;
        const outputs = (cell.model as any).outputs;
        let hasResult = false;
        for (let i = 0; i < (outputs?.length ?? 0); i++) {
          hasResult = hasResult || outputs.get(i).type === 'execute_result';
        }
        // a result is shown before the kernel's reply gives the cell its number: until then
        // Out[n] cannot be named, so say so instead of writing a request for the wrong output
        if (hasResult && !count) {
          await showErrorMessage('Request release', 'This cell is still running: request the ' +
            'release of its output once it has finished (its prompt shows a number).');
          return;
        }
        const form = new RequestForm(count ? `output_${count}` : 'output',
          study?.views ?? []);
        const result = await showDialog({
          title: 'Request release',
          body: form,
          buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Request release' })]
        });
        if (!result.button.accept || !result.value) {
          return;
        }
        const values = result.value;
        if (!NAME.test(values.name)) {
          await showErrorMessage('Request release', 'The name is 1-80 letters, digits, ' +
            '".", "_" or "-" (it becomes the file name), e.g. km_by_tki');
          return;
        }
        const target = hasResult && count ? `Out[${count}]` : 'OUTPUT';
        const args = [target, py(values.name), py(values.description || values.name)];
        if (values.view) {
          args.push(`view=${py(values.view)}`);
        }
        if (values.justification) {
          args.push(`justification=${py(values.justification)}`);
        }
        const source = (hasResult ? '' :
          '# OUTPUT: put the object shown above here (the figure, table or fit), then run\n') +
          `wb.release.request(${args.join(', ')})`;
        panel.content.activeCellIndex = index;
        NotebookActions.insertBelow(panel.content);
        const added = panel.content.activeCell;
        if (!added) {
          return;
        }
        added.model.sharedModel.setSource(source);
        if (hasResult) {
          await NotebookActions.run(panel.content, panel.sessionContext);
        }
      }
    });
    app.contextMenu.addItem({
      command: 'workbench:request-release',
      selector: '.jp-Notebook .jp-OutputArea-output',
      rank: 0
    });
  }
};

export default plugin;
